# Every third-party library comes from the system (Debian packages) or a prefix given in
# CMAKE_PREFIX_PATH; nothing is vendored. A missing one stops configuration with the
# package that provides it.
macro(fp8scope_require pkg debian)
  find_package(${pkg} ${ARGN} QUIET)
  if(NOT ${pkg}_FOUND)
    message(FATAL_ERROR "fp8scope: ${pkg} not found. On Debian/Ubuntu: apt-get install ${debian} "
                        "(or add its prefix to CMAKE_PREFIX_PATH).")
  endif()
endmacro()

fp8scope_require(nlohmann_json nlohmann-json3-dev)
fp8scope_require(fmt libfmt-dev)
fp8scope_require(GTest libgtest-dev)
fp8scope_require(benchmark libbenchmark-dev)

# CLI11 is header-only. Debian ships a CMake package; elsewhere a plain include prefix
# (e.g. -DCMAKE_PREFIX_PATH=$PWD/.deps with .deps/include/CLI/CLI.hpp) is enough.
find_package(CLI11 CONFIG QUIET)
if(NOT TARGET CLI11::CLI11)
  find_path(FP8SCOPE_CLI11_INCLUDE CLI/CLI.hpp)
  if(NOT FP8SCOPE_CLI11_INCLUDE)
    message(FATAL_ERROR "fp8scope: CLI11 not found. On Debian/Ubuntu: apt-get install libcli11-dev "
                        "(or put CLI/CLI.hpp under a prefix in CMAKE_PREFIX_PATH).")
  endif()
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${FP8SCOPE_CLI11_INCLUDE})
endif()

# The CUDA runtime is linked statically so that executables start on machines without a
# driver; NVML is loaded at run time (dlopen) for the same reason.
if(FP8SCOPE_HAVE_CUDA)
  find_package(CUDAToolkit REQUIRED)
  foreach(t CUDA::cublasLt CUDA::cudart_static CUDA::nvtx3)
    if(NOT TARGET ${t})
      message(FATAL_ERROR "fp8scope: the CUDA toolkit lacks ${t}; install the full toolkit (cuBLAS, NVTX).")
    endif()
  endforeach()
endif()

# Data-parallel training runs one thread per GPU.
find_package(Threads REQUIRED)

find_package(Git QUIET)
