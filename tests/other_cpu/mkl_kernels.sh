#!/usr/bin/env bash
# Lists the MKL vector-math kernels a command reaches, and how many approximate-reciprocal instructions
# (rcp*/rsqrt*, whose results differ between CPU vendors) each contains: the check of issue 41 that the
# portable pins keep every run on kernels whose bits do not depend on the vendor.
# Usage: tests/other_cpu/mkl_kernels.sh .venv/bin/python run_bench.py ... --numerics portable ...
# Needs gdb, nm and objdump. Each kernel is reported at its first call only (one breakpoint hit each).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...] (e.g. .venv/bin/python run_bench.py ...)" >&2; exit 2; }
script=$(mktemp) log=$(mktemp)
trap 'rm -f "$script" "$log"' EXIT
cat > "$script" <<'GDB'
set pagination off
set print thread-events off
set confirm off
catch load libtorch_cpu
run
rbreak ^mkl_vml_kernel_[sd][A-Z]
python
points = [b for b in gdb.breakpoints() if b.number > 1]
for point in points:
    point.commands = "silent\nbt 1\ncontinue"
gdb.execute(f"enable once {points[0].number}-{points[-1].number}")
gdb.execute("delete 1")
end
continue
quit
GDB
gdb -batch -x "$script" --args "$@" > "$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
library=$(grep -m1 -o '/[^ ]*libtorch_cpu\.so' "$log")
kernels=$(grep '^#0' "$log" | grep -o 'mkl_vml_kernel_[A-Za-z0-9_]*' | sort -u)
[ -n "$kernels" ] || { echo "no MKL vector-math kernel reached"; exit 0; }
echo "MKL vector-math kernels reached (library: $library):"
for kernel in $kernels; do
    read -r address size < <(nm -S "$library" | awk -v name="$kernel" '$4 == name {print $1, $2}')
    start=$((16#$address)); stop=$((start + 16#$size))
    approximate=$(objdump -d --no-show-raw-insn --start-address=$start --stop-address=$stop "$library" \
        | grep -c -E '\s(v?rcp|v?rsqrt)(14|28)?(ps|ss|pd|sd)\s' || true)
    echo "  $kernel: $approximate approximate-reciprocal instruction(s)"
done
