"""The eighth CPU walkthrough's run-folder fixes (a SLURM rehearsal, 2026-12-07; each caught): one
training per run folder (an flock on RUN/.lock, rank 0 only, released at the end and on a failed
start), a stop whose save a dead process broke is one line, torch.save's full disk says "No space
left on device" with the free space, and the run's first line names device, processes, precision."""

from run import Mutant

W = "tests/test_walkthrough8_run_units.py"
T_LOCK = f"{W}::test_a_second_process_is_refused_in_one_line_and_a_killed_holders_lock_is_taken_over"
T_SHARE = f"{W}::test_one_process_shares_its_lock_and_the_last_release_unlocks"
T_TRAIN = f"{W}::test_training_locks_its_folder_on_rank_0_only_until_run_ends"
T_FAILED = f"{W}::test_a_failed_start_unlocks_the_folder"
T_STOP = f"{W}::test_a_stop_whose_save_a_dead_process_broke_says_so_in_one_line"
T_RAW = f"{W}::test_a_collective_failure_without_a_stop_or_another_error_is_raised_as_it_is"
T_FULL = f"{W}::test_torch_saves_full_disk_says_no_space_left_with_the_free_space"
T_LINE = f"{W}::test_a_training_prints_its_startup_line_first_and_the_warning"
T_AUTO = f"{W}::test_device_auto_falling_back_to_the_cpu_warns_unless_the_miniature"

MUTANTS = [
    Mutant(
        "run-lock-not-taken",
        "tlcm/files.py",
        "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
        "            pass\n",
        (T_LOCK,),
        "two jobs train into one folder at once (interleaved metrics, whichever export wins)",
    ),
    Mutant(
        "run-lock-file-kept-on-release",
        "tlcm/files.py",
        "            with contextlib.suppress(OSError):  # removed while locked: an opener checks the inode\n"
        "                os.unlink(self.path)\n",
        "            pass\n",
        (T_SHARE, T_FAILED),
        "a failed start leaves RUN/.lock, so tlcm.train cannot remove the folder it created",
    ),
    Mutant(
        "run-lock-shared-release-unlocks-early",
        "tlcm/files.py",
        "        if entry[1] == 0:\n",
        "        if True:\n",
        (T_SHARE,),
        "one of two Trainers of a folder in a process ending unlocks the folder for another job",
    ),
    Mutant(
        "trainer-takes-no-lock",
        "tlcm/engine.py",
        "self.lock = lock_run(rt.out_dir) if self.dist.is_main else None",
        "self.lock = None",
        (T_TRAIN,),
        "the engine never locks its run folder",
    ),
    Mutant(
        "trainer-locks-on-every-rank",
        "tlcm/engine.py",
        "self.lock = lock_run(rt.out_dir) if self.dist.is_main else None",
        "self.lock = lock_run(rt.out_dir)",
        (T_TRAIN,),
        "under torchrun every rank locks the folder: rank 1 is refused by its own rank 0",
    ),
    Mutant(
        "run-keeps-the-lock",
        "tlcm/engine.py",
        "        finally:\n            self.release()\n",
        "        finally:\n            pass\n",
        (T_TRAIN,),
        "a finished library run keeps its folder locked: its rerun in another process is refused",
    ),
    Mutant(
        "failed-start-keeps-the-lock",
        "tlcm/engine.py",
        "        except BaseException:\n            self.release()\n            raise\n",
        "        except BaseException:\n            raise\n",
        (T_FAILED,),
        "a start that failed after locking keeps RUN/.lock (and the folder tlcm.train created)",
    ),
    Mutant(
        "stop-failure-raised-raw",
        "tlcm/distributed.py",
        "        why = _asked_within(asked, wait) if collective_failure(err) else None\n",
        "        why = None\n",
        (T_STOP,),
        'after "stopping after this step to save a checkpoint" a dead process gives gloo\'s traceback '
        "and no word that nothing was saved",
    ),
    Mutant(
        "any-error-after-a-stop-is-a-dead-process",
        "tlcm/distributed.py",
        "        why = _asked_within(asked, wait) if collective_failure(err) else None\n",
        "        why = _asked_within(asked, wait)\n",
        (T_RAW,),
        "a CUDA error during a stop's save is reported as another process's death",
    ),
    Mutant(
        "torch-full-disk-keeps-torch-text",
        "tlcm/checkpoint.py",
        "cause = err if isinstance(err, OSError) else torch_write_error(err, root)",
        "cause = err if isinstance(err, OSError) else OSError(str(err).splitlines()[0])",
        (T_FULL,),
        "a full disk under torch.save reads '[enforce fail at inline_container.cc:672] . unexpected pos'",
    ),
    Mutant(
        "no-startup-line",
        "tlcm/distributed.py",
        "    print(startup_line(info, frozen, bf16), flush=True)\n",
        "",
        (T_LINE,),
        "nothing says the run trains on the CPU with gloo",
    ),
    Mutant(
        "cpu-fallback-never-warns",
        "tlcm/distributed.py",
        'if requested != "auto" or info.device.type != "cpu" or miniature:',
        "if True:",
        (T_AUTO, T_LINE),
        "an empty CUDA_VISIBLE_DEVICES trains an SDXL job on the CPU without a word",
    ),
]
