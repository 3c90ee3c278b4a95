"""Round 16, the fifth CPU walkthrough's fixes (2026-12-07; each caught): gpu_check.sh keeps the
plan's first sections when its arguments name none, the tiny benchmark's default --out is not
benchmarks/results, the memory plan's CPU refusal names the budget flag, FSDP2's view-tensor
warning is filtered from torch's FSDP2 only, the end summary's sample command writes into the run,
and ``tlcm.export --format pipeline`` lists pipeline/ in the kept card."""

from run import Mutant

W = "tests/test_walkthrough5_units.py"
T_CHECK = f"{W}::test_gpu_check_keeps_the_first_calls_sections_unless_sections_are_given"
T_TINY = f"{W}::test_tiny_benchmark_writes_to_a_temp_folder_unless_out_is_given"
T_PLAN = f"{W}::test_memory_plan_refusal_on_cpu_names_the_budget_flag"
T_VIEW = f"{W}::test_fsdp2_view_warning_is_filtered_only_from_torch_fsdp"
T_SHARD = f"{W}::test_shard_installs_the_filter_for_a_network_returning_a_view"
T_SAMPLE = f"{W}::test_summary_sample_command_writes_into_the_run"
T_CARD = f"{W}::test_export_pipeline_after_training_lists_pipeline_in_the_kept_card"

MUTANTS = [
    Mutant(
        "gpu-check-drops-default-sections",
        "benchmarks/gpu_check.sh",
        '  *) set -- --sections build,sdxl,inference,speed "$@" ;;',
        "  *) ;;",
        (T_CHECK,),
        "gpu_check.sh --steps 2 runs every section and builds every model (~59 GB)",
    ),
    Mutant(
        "tiny-benchmark-writes-the-committed-results",
        "benchmarks/gpu.py",
        "args.out = TINY_OUT if args.tiny else RESULTS",
        "args.out = RESULTS",
        (T_TINY,),
        "--device cpu overwrites benchmarks/results/gpu.{json,md} with tiny numbers",
    ),
    Mutant(
        "memory-plan-refusal-vague",
        "tlcm/memory_plan.py",
        '"--recipes.runtime.memory-budget-gib (without a budget the plan, "',
        '"the memory plan (without a budget the plan, "',
        (T_PLAN,),
        "the CPU refusal does not name the flag to drop",
    ),
    Mutant(
        "view-warning-filter-every-module",
        "tlcm/distributed.py",
        'VIEW_WARNING, UserWarning, r"torch\\.distributed\\.fsdp\\.")',
        'VIEW_WARNING, UserWarning, "")',
        (T_VIEW,),
        "the filter hides the message from any module, not only torch's FSDP2",
    ),
    Mutant(
        "view-warning-regex-misses-the-message",
        "tlcm/distributed.py",
        'VIEW_WARNING = r"FSDP2-wrapped module \\(.*\\) returned a view tensor',
        'VIEW_WARNING = r"FSDP2-wrapped module \\(.*\\) returned view tensor',
        (T_VIEW, T_SHARD),
        "the filter matches nothing: the FLUX log floods again",
    ),
    Mutant(
        "shard-without-the-view-filter",
        "tlcm/distributed.py",
        "    quiet_view_warning()\n    mesh = init_device_mesh",
        "    mesh = init_device_mesh",
        (T_SHARD,),
        "the filter is never installed where tlcm shards",
    ),
    Mutant(
        "sample-command-without-out",
        "tlcm/summary.py",
        "        f\" --out {shell_path(run / 'samples.png')}\"  # not outputs/ of the working directory\n",
        "",
        (T_SAMPLE,),
        "the printed sample command writes outputs/samples.png in the working directory",
    ),
    Mutant(
        "export-pipeline-keeps-the-card-unchanged",
        "tlcm/export.py",
        "                (out / CARD_FILE).write_text(listed)",
        "                pass",
        (T_CARD,),
        "the kept training card does not list pipeline/ after tlcm.export --format pipeline",
    ),
]
