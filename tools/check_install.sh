#!/usr/bin/env bash
# The newcomer's install, end to end (issue 13). Slow (a fresh venv is ~5.5 GB with torch):
# NOT run in CI; tests/test_install.py checks the wheel's contents quickly instead.
#
#   bash tools/check_install.sh            # README's two commands verbatim, then the wheel
#   bash tools/check_install.sh --quick    # the same with `vjepa demo --quick` and
#                                          # `pytest -q -m "not slow"`
#   bash tools/check_install.sh --reuse /tmp/vjepa-install-XXXXXX
#                                          # steps 3-4 only, on the clone + venv of an
#                                          # earlier run, after pulling this HEAD into it
#
# 1. a fresh clone of this repository's HEAD (committed work only) in a temp folder;
# 2. README's "Quick start" commands, read from README.md itself (its first two ```bash
#    blocks), run verbatim in that clone, in a clean environment (fresh HOME: no pip cache,
#    no PYTHONPATH), each timed;
# 3. a wheel of the clone (`pip wheel --no-deps`), installed non-editable into the same venv
#    after removing the editable vjepa AND decord;
# 4. from another folder: `vjepa demo --quick` must find its configs and sample data through
#    the installed package and decode without decord.
# Prints one line per step with its wall time; exits non-zero at the first failure.
set -euo pipefail

QUICK=0 REUSE=""
[[ "${1:-}" == "--quick" ]] && QUICK=1
[[ "${1:-}" == "--reuse" ]] && REUSE="${2:?--reuse needs the folder of an earlier run}"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -n "$REUSE" ]]; then
    WORK="$REUSE"
    git -C "$WORK/clone" fetch --quiet "$SRC" HEAD && git -C "$WORK/clone" checkout --quiet FETCH_HEAD
else
    WORK="$(mktemp -d /tmp/vjepa-install-XXXXXX)"
    git clone --quiet "$SRC" "$WORK/clone"
fi
echo "check_install: working in $WORK (source: $SRC @ $(git -C "$SRC" rev-parse --short HEAD))"
mkdir -p "$WORK/home" "$WORK/elsewhere"

# The Quick start's first two ```bash blocks, one command line each.
mapfile -t CMDS < <(python3 - "$WORK/clone/README.md" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
start = text.index("## Quick start")
blocks = re.findall(r"```bash\n(.*?)```", text[start:], flags=re.S)[:2]
for block in blocks:
    print(" && ".join(line.strip() for line in block.strip().splitlines() if line.strip()))
EOF
)
if [[ ${#CMDS[@]} -ne 2 ]]; then
    echo "check_install: README.md has no two bash blocks under '## Quick start'" >&2
    exit 1
fi
# Until README.md carries them, the commands can be given: VJEPA_CHECK_CMD1 / VJEPA_CHECK_CMD2.
CMDS[0]="${VJEPA_CHECK_CMD1:-${CMDS[0]}}"
CMDS[1]="${VJEPA_CHECK_CMD2:-${CMDS[1]}}"
for c in "${CMDS[@]}"; do
    if [[ -z "$REUSE" && "$c" == *"pip install"* && "$c" != *"bin/activate"* ]]; then
        echo "check_install: refusing to run '$c': it would pip-install outside a venv" >&2
        exit 1
    fi
done
if [[ $QUICK == 1 ]]; then
    CMDS[0]="${CMDS[0]/vjepa demo/vjepa demo --quick}"
    CMDS[1]="${CMDS[1]/pytest -q/pytest -q -m \"not slow\"}"
fi

# A clean environment like a new user's shell: fresh HOME, the system PATH, nothing else.
clean() {
    env -i HOME="$WORK/home" PATH="$PATH" LANG=C.UTF-8 TERM=dumb \
        ${PYENV_ROOT:+PYENV_ROOT="$PYENV_ROOT"} bash -c "$1"
}

step() {  # step NAME DIR COMMAND
    local name=$1 dir=$2 cmd=$3 t0
    echo "check_install: [$name] in $dir: $cmd"
    t0=$(date +%s)
    (cd "$dir" && clean "$cmd") > "$WORK/$name.log" 2>&1 || {
        echo "check_install: [$name] FAILED after $(($(date +%s) - t0)) s; last lines of $WORK/$name.log:" >&2
        tail -30 "$WORK/$name.log" >&2
        exit 1
    }
    echo "check_install: [$name] ok in $(($(date +%s) - t0)) s"
}

if [[ -z "$REUSE" ]]; then
    # The install alone first (its time is the figure README states), then the commands.
    step install "$WORK/clone" "python3 -m venv .venv && . .venv/bin/activate && pip install -e ."
    step readme1 "$WORK/clone" "${CMDS[0]}"
    step readme2 "$WORK/clone" "${CMDS[1]}"
fi

VENV="$WORK/clone/.venv"
step wheel "$WORK/clone" ". .venv/bin/activate && rm -rf dist build && pip wheel --no-deps --no-build-isolation -w dist . \
    && pip uninstall -y vjepa decord && pip install --no-deps dist/vjepa-*.whl"
step no-decord "$WORK/elsewhere" ". $VENV/bin/activate \
    && ! python -c 'import decord' 2>/dev/null \
    && python -c 'import vjepa, vjepa.demo.pretrain as d; assert \"site-packages\" in vjepa.__file__, vjepa.__file__; print(vjepa.__file__, d.REPO)'"
step demo-wheel "$WORK/elsewhere" ". $VENV/bin/activate && rm -rf runs && vjepa demo --quick --out runs/demo"
grep -h "video decoder" "$WORK/demo-wheel.log" | sort -u
tail -5 "$WORK/demo-wheel.log"
echo "check_install: all steps passed ($WORK; remove it when done)"
