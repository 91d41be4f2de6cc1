#!/usr/bin/env bash
# Installs a libtorch for src/postnas (the PostNAS trainer and its tests): the libtorch inside the
# PyPI `torch` wheel, found by CMake through python3 (see src/postnas/CMakeLists.txt).
#
#   scripts/install_torch.sh          CPU use (CI, developers): the torch wheel without its CUDA
#                                     dependencies, plus the two small CUDA runtime wheels that
#                                     libtorch_cpu.so loads (libcudart, libcupti). CMake then links
#                                     libtorch_cpu + libc10 only. ~0.6 GB download, ~1.3 GB on disk.
#   scripts/install_torch.sh --full   the complete wheel with every CUDA library (cuDNN, cuBLAS, NCCL
#                                     ...), for training on a GPU: ~2.8 GB download, ~5 GB on disk.
#
# PyPI offers no CPU-only torch wheel for Linux (those live on PyTorch's own index, which these
# machines cannot reach); Debian's libtorch-dev is 1.13, too old for the APIs the trainer uses.
# Does nothing when a torch with its CMake files is already installed. JETLM_TORCH_VERSION
# overrides the version (default 2.15.0; the GPU machine has 2.11, which also works).
set -euo pipefail
version="${JETLM_TORCH_VERSION:-2.15.0}"
full=0
if [ "${1:-}" = "--full" ]; then full=1; fi

have_torch() {
  python3 - 2> /dev/null << 'EOF'
import importlib.util, os, sys
spec = importlib.util.find_spec("torch")
root = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else ""
sys.exit(0 if root and os.path.exists(os.path.join(root, "share/cmake/Torch/TorchConfig.cmake")) else 1)
EOF
}

pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

if have_torch; then
  echo "install_torch: torch is already installed ($(python3 -c 'import importlib.metadata as m; print(m.version("torch"))' 2> /dev/null || echo '?'))"
  exit 0
fi
start=$(date +%s)
if [ "$full" = 1 ]; then
  pip_install "torch==${version}"
else
  pip_install --no-deps "torch==${version}"
  # The exact CUDA runtime and CUPTI versions this torch was built against, from its metadata.
  mapfile -t cuda_reqs < <(python3 - << 'EOF'
import importlib.metadata as m, re
for r in m.requires("torch") or []:
    name = re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower().replace("_", "-")
    spec = r.split(";")[0].strip()
    if name in ("nvidia-cuda-runtime", "nvidia-cuda-cupti") or re.match(r"nvidia-cuda-(runtime|cupti)-cu\d+", name):
        print(spec)                   # torch <= 2.13 names the wheels directly
    elif name == "cuda-toolkit":      # newer torch: a meta-package with one extra per library
        print("cuda-toolkit[cudart,cupti]" + re.sub(r"^[^<>=!~]*", "", spec))
EOF
  )
  # (with their dependencies: the cuda-toolkit meta-package pulls exactly the two wheels)
  if [ "${#cuda_reqs[@]}" -gt 0 ]; then pip_install "${cuda_reqs[@]}"; fi
fi
echo "install_torch: torch ${version} installed in $(($(date +%s) - start)) s ($([ "$full" = 1 ] && echo full || echo 'CPU use, no CUDA stack'))"
