"""Print one ``name: value`` line per headline figure of a pytest-benchmark JSON file."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summary_lines(report: dict) -> list[str]:
    lines = []
    for bench in report["benchmarks"]:
        name, median, extra = bench["name"], bench["stats"]["median"], bench.get("extra_info", {})
        if name == "test_cmnist_conv_epoch":
            lines.append(f"cmnist_epoch_seconds: {median:.2f}")
            lines.append(f"cmnist_epoch_samples_per_s: {extra['samples'] / median:.0f}")
            lines.append(f"cmnist_reference_epoch_seconds: {extra['reference_seconds']:.2f}")
            lines.append(f"cmnist_epoch_speedup: {extra['speedup']:.2f}")
        elif name == "test_resnet18_pipeline_efficiency":
            lines.append(f"resnet18_pipeline_efficiency: {extra['efficiency']:.2f}")
            if "step_seconds" in extra:  # cifar10c's protocol: 176 steps per epoch, 50k iterations (DFA's budget)
                lines.append(f"cifar10c_erm_epoch_seconds: {extra['step_seconds'] * 176:.2f}")
                lines.append(f"cifar10c_erm_50k_iterations_projected_s: {extra['step_seconds'] * 50_000:.0f}")
        elif name == "test_cifar10c_step_configurations":
            for config, seconds in extra["step_seconds"].items():
                lines.append(f"cifar10c_step_seconds_{config}: {seconds:.3f}")
            for config, rate in extra["steps_per_s"].items():
                lines.append(f"cifar10c_machine_steps_per_s_{config}: {rate:.3f}")
            lines.append(f"cifar10c_cores: {extra['cores']}")
            lines.append(f"cifar10c_better_layout: {extra['better_layout']} ({extra['layout_gain']:.2f}x)")
            lines.append(f"cifar10c_fastest_fp32: {extra['fastest_fp32']}")
            for figure in ("suite_over_bare_1xN", "suite_over_bare_Nx1", "portable_slowdown",
                           "channels_last_speedup", "compile_speedup", "bf16_speedup"):
                if extra.get(figure) is not None:
                    lines.append(f"cifar10c_{figure}: {extra[figure]:.2f}")
            lines.append(f"cifar10c_paper_erm_training_s_projected: {extra['paper_erm_training_s_projected']:.0f}")
        elif name == "test_resnet18_train_step":
            lines.append(f"resnet18_step_seconds_batch256: {median:.3f}")
        elif name == "test_pgd_scoring_closed_form_vs_loop":
            lines.append(f"pgd_scoring_seconds_54k: {median:.2f}")
            lines.append(f"pgd_loop_seconds_54k_scaled: {extra['loop_seconds_54k_scaled']:.1f}")
            lines.append(f"pgd_scoring_speedup: {extra['speedup']:.1f}")
        elif name == "test_diagnostics_cost":
            lines.append(f"diagnostics_seconds_cmnist: {median:.2f}")
            lines.append(f"diagnostics_fraction_of_paper_run: {extra['fraction_of_paper_run']:.4f}")
        elif name in ("test_checkpoint_cost_conv", "test_checkpoint_cost_resnet18"):
            net = name.rsplit("_", 1)[1]
            lines.append(f"checkpoint_seconds_{net}: {median:.3f}")
            lines.append(f"checkpoint_mb_{net}: {extra['bytes'] / 1e6:.1f}")
            lines.append(f"checkpoint_fraction_of_epoch_{net}: {extra['fraction_of_epoch']:.4f}")
            if net == "resnet18":
                lines.append(f"cifar10c_dfa_epoch_seconds: {extra['epoch_seconds']:.2f}")
                lines.append(f"cifar10c_dfa_50k_iterations_projected_s: {extra['epoch_seconds'] / 176 * 50_000:.0f}")
        elif name.startswith("test_cuda_syncs_per_step"):
            lines.append(f"cuda_syncs_per_step_{extra['method']}: {extra['syncs_per_step']:.2f}")
        elif name.startswith("test_portable_numerics_cost"):
            workload = extra["workload"]
            slowdown = extra["portable_step_seconds"] / extra["native_step_seconds"]
            lines.append(f"portable_numerics_slowdown_{workload}: {slowdown:.2f}")
            lines.append(f"{workload}_step_seconds_native_1thread: {extra['native_step_seconds']:.4f}")
            lines.append(f"{workload}_step_seconds_portable_1thread: {extra['portable_step_seconds']:.4f}")
            if "exact_sqrt_cost" in extra:
                lines.append(f"{workload}_step_seconds_portable_exact_sqrt_1thread: "
                             f"{extra['exact_sqrt_step_seconds']:.4f}")
                lines.append(f"portable_exact_sqrt_cost_{workload}: {extra['exact_sqrt_cost']:.3f}")
        elif name == "test_jobs_throughput_gain":
            lines.append(f"jobs{extra['jobs']}_throughput_gain: {extra['gain']:.2f}")
    return lines


if __name__ == "__main__":
    print("\n".join(summary_lines(json.loads(Path(sys.argv[1]).read_text()))))
