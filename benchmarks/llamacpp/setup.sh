#!/usr/bin/env bash
# The llama.cpp side of benchmarks/llamacpp/compare.py (README.md): a venv with llama-cpp-python
# built from source, and MODEL_DIR's weights converted to GGUF F16 and Q8_0 with the converter
# that source ships. Run from the repository root:
#     benchmarks/llamacpp/setup.sh MODEL_DIR [OUT_DIR]
# Environment: VENV (default .venv-llamacpp), SRC (.cache/llamacpp-src), PYDEPS
# (.cache/llamacpp-pydeps), GUARD_PY (guard's own Python with the 'export' extra: the converter
# imports torch and transformers; default .venv/bin/python), CMAKE_ARGS (default
# -DGGML_NATIVE=ON: built for this CPU).
set -euo pipefail
MODEL=${1:?usage: benchmarks/llamacpp/setup.sh MODEL_DIR [OUT_DIR]}
OUT=${2:-$MODEL/gguf}
VERSION=0.3.36
VENV=${VENV:-.venv-llamacpp}
SRC=${SRC:-.cache/llamacpp-src}
PYDEPS=${PYDEPS:-.cache/llamacpp-pydeps}
GUARD_PY=${GUARD_PY:-.venv/bin/python}
export CMAKE_ARGS=${CMAKE_ARGS:--DGGML_NATIVE=ON}

python3 -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
# From source (--no-binary), so the build is this CPU's (CMAKE_ARGS), not a generic wheel's.
"$VENV/bin/pip" install --no-binary llama-cpp-python "llama-cpp-python==$VERSION" numpy

# The same source, unpacked: its vendored llama.cpp has convert_hf_to_gguf.py and gguf-py.
mkdir -p "$SRC"
"$VENV/bin/pip" download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$SRC"
tar -xzf "$SRC/llama_cpp_python-$VERSION.tar.gz" -C "$SRC"
LLAMA="$SRC/llama_cpp_python-$VERSION/vendor/llama.cpp"

# The converter imports sentencepiece; installed apart, for guard's Python, never into its venv.
PYV=$("$GUARD_PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
"$VENV/bin/pip" install --target "$PYDEPS" --only-binary :all: --python-version "$PYV" \
    sentencepiece

mkdir -p "$OUT"
for TYPE in f16 q8_0; do
    PYTHONPATH="$LLAMA/gguf-py:$PYDEPS" "$GUARD_PY" "$LLAMA/convert_hf_to_gguf.py" "$MODEL" \
        --outtype "$TYPE" --outfile "$OUT/model-$TYPE.gguf"
done
echo "venv: $VENV; GGUF: $OUT/model-f16.gguf $OUT/model-q8_0.gguf"
