#!/usr/bin/env bash
# Lists the MKL vector-math kernels a command reaches, and how many approximate-reciprocal instructions
# (rcp*/rsqrt*, whose results differ between CPU vendors) each kernel's own body contains: the check of
# issue 41 that the portable pins keep a run on kernels whose bits do not depend on the vendor.
# Usage: tests/other_cpu/mkl_kernels.sh .venv/bin/python run_bench.py ... --numerics portable --jobs 1
# One process only: gdb does not follow --jobs workers or Ray tasks. Each kernel is reported at its first
# call (one breakpoint hit each). Needs gdb, nm and objdump.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...] (e.g. .venv/bin/python run_bench.py ... --jobs 1)" >&2; exit 2; }
for tool in gdb nm objdump; do
    command -v "$tool" > /dev/null || { echo "$0 needs $tool" >&2; exit 2; }
done
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
if not points:
    raise gdb.GdbError("mkl_kernels: no MKL vector-math kernel in libtorch_cpu to break on")
for point in points:
    point.commands = "silent\nbt 1\ncontinue"
gdb.execute(f"enable once {points[0].number}-{points[-1].number}")
gdb.execute("delete 1")
end
continue
quit
GDB
gdb -batch -x "$script" --args "$@" > "$log" 2>&1 || true
if ! grep -q "exited normally" "$log"; then
    echo "$0: the command did not run to a normal exit under gdb; its last lines:" >&2
    tail -20 "$log" >&2
    exit 1
fi
hits=$(grep '^#0 .* in mkl_vml_kernel_' "$log" || true)
if [ -z "$hits" ]; then
    echo "no MKL vector-math kernel reached"
    exit 0
fi
echo "MKL vector-math kernels reached:"
status=0
while read -r kernel library; do
    symbols=$(nm -S "$library" 2>/dev/null | awk -v name="$kernel" '$4 == name {print $1, $2}')
    [ -n "$symbols" ] || symbols=$(nm -D -S "$library" 2>/dev/null | awk -v name="$kernel" '$4 == name {print $1, $2}')
    if [ "$(printf '%s\n' "$symbols" | grep -c .)" -ne 1 ]; then
        echo "  $kernel ($library): its symbol is not found exactly once, not scanned"; status=1; continue
    fi
    read -r address size <<< "$symbols"
    start=$((16#$address)); stop=$((start + 16#$size))
    body=$(objdump -d --no-show-raw-insn --start-address=$start --stop-address=$stop "$library" | grep -E '^\s+[0-9a-f]+:' || true)
    if [ -z "$body" ]; then
        echo "  $kernel ($library): nothing disassembled, not scanned"; status=1; continue
    fi
    approximate=$(printf '%s\n' "$body" | grep -c -E '\s(v?rcp|v?rsqrt)(14|28)?(ps|ss|pd|sd)\s' || true)
    echo "  $kernel: $approximate approximate-reciprocal instruction(s) in $(printf '%s\n' "$body" | wc -l) ($library)"
done < <(printf '%s\n' "$hits" | sed -E 's/.* in (mkl_vml_kernel_[A-Za-z0-9_]+) \(\) from ([^ ]+).*/\1 \2/' | sort -u)
exit $status
