"""A fake ``subprocess.Popen`` for the ablation runners (ablations.run, ablations.zoo), which start
one process per run and poll them: nothing is trained, the commands are recorded."""

from __future__ import annotations

import subprocess
import time
from types import SimpleNamespace


class FakeProcesses:
    """``Popen``: a process class whose processes record their command, run until their
    ``polls``-th poll and then exit with ``returncode``. Records every command (``cmds``), the
    starts and finishes in order (``events``: ("start" | "done", the run's --only)) and the most
    processes running at once (``most``)."""

    def __init__(self, returncode: int = 0, polls: int = 2):
        self.cmds: list[list[str]] = []
        self.events: list[tuple[str, str]] = []
        self.running = self.most = 0
        outer = self

        class Process:
            def __init__(self, cmd, **kwargs):
                outer.cmds.append(cmd)
                self.name = cmd[cmd.index("--only") + 1] if "--only" in cmd else ""
                outer.events.append(("start", self.name))
                outer.running += 1
                outer.most = max(outer.most, outer.running)
                self.polls, self.returncode = 0, None

            def poll(self):
                self.polls += 1
                if self.polls < polls:
                    return None
                if self.returncode is None:
                    outer.running -= 1
                    outer.events.append(("done", self.name))
                self.returncode = returncode
                return returncode

        self.Popen = Process

    def patch(self, monkeypatch, module) -> FakeProcesses:
        """Start ``module``'s processes (it imports subprocess and time) with this fake, and make
        its waits instant; returns self. Only ``module``'s names are replaced (copies of the two
        modules): a library that starts a process meanwhile (matplotlib's first import runs
        fc-list to build its font cache) still gets the real Popen."""
        processes = SimpleNamespace(**{**vars(subprocess), "Popen": self.Popen})
        monkeypatch.setattr(module, "subprocess", processes)
        monkeypatch.setattr(module, "time", SimpleNamespace(**{**vars(time), "sleep": lambda s: None}))
        return self

    def started(self) -> list[str]:
        """The --only of each process started, in order."""
        return [name for what, name in self.events if what == "start"]

    def values(self, flag: str) -> list[str]:
        """The value of ``flag`` in each command, in order."""
        return [cmd[cmd.index(flag) + 1] for cmd in self.cmds]
