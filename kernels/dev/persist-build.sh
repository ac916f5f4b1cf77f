# Sourced by persist-variants.sh and ncu-persist.sh (repo root, on the GPU machine): the tree built for sm_90a, and
# the tree's objects linked with another compile of the persistent kernel.
arch="-gencode=arch=compute_90a,code=sm_90a"
obj=kernels/build/obj
# persist_build_tree LOG [build.sh mode]: the tree's build (everything, or e.g. --tests); its tail on failure
persist_build_tree() {
  JOBS=16 ZK_ARCHS="$arch" timeout 300 bash kernels/build.sh ${2:-} > "$1" 2>&1 || { tail -20 "$1"; return 1; }
}
# the tree's kernel objects but the persistent kernel's
persist_kernel_objs() {
  for f in kernels/src/*.cu; do b=$(basename "$f"); [ "$b" = mamba2-decode-persistent.cu ] || echo "$obj/$b.o"; done
}
# persist_link NAME SRC OBJ [nvcc flags]: SRC (a mamba2-decode-persistent.cu) compiled to OBJ and linked with the
# tree's test objects into kernels/build/test-kernels-NAME
persist_link() {
  local name="$1" src="$2" o="$3"
  shift 3
  nvcc -std=c++17 -O3 -Ikernels/include -Xcompiler -fPIC --expt-relaxed-constexpr $arch "$@" -c "$src" -o "$o" &&
    nvcc $arch -o "kernels/build/test-kernels-$name" $obj/test-*.cu.o $obj/cpu-reference.o $(persist_kernel_objs) "$o"
}
# persist_link_engine NAME OBJ: OBJ (from persist_link) linked with the tree's engine into kernels/build/bench-engine-NAME
persist_link_engine() {
  local engine_objs="$obj/gemm-cublaslt.o $(for f in kernels/engine/*.cc; do echo "$obj/$(basename "${f%.cc}").o"; done)"
  nvcc $arch -o "kernels/build/bench-engine-$1" $obj/bench-engine.o $engine_objs $(persist_kernel_objs) "$2" \
    -L/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart
}
