# Every third-party library comes from the system (Debian packages) or a prefix given in
# CMAKE_PREFIX_PATH; nothing is vendored. A repository-local prefix `.deps/` (e.g. CLI11's
# headers in .deps/include/CLI on a machine without the Debian package) is searched too.
#
# Every missing library is collected before configuration stops, so one run names all of
# them: a human-readable list, and one line `fp8scope-missing: <name>=<debian package> ...`
# that scripts/setup.sh reads to install them (or to say how to point CMAKE_PREFIX_PATH at them).
if(EXISTS ${PROJECT_SOURCE_DIR}/.deps)
  list(APPEND CMAKE_PREFIX_PATH ${PROJECT_SOURCE_DIR}/.deps)
endif()

set(FP8SCOPE_MISSING "")
macro(fp8scope_require pkg debian)
  find_package(${pkg} ${ARGN} QUIET)
  if(NOT ${pkg}_FOUND)
    list(APPEND FP8SCOPE_MISSING "${pkg}=${debian}")
  endif()
endmacro()

fp8scope_require(nlohmann_json nlohmann-json3-dev)
fp8scope_require(fmt libfmt-dev)
fp8scope_require(GTest libgtest-dev)
fp8scope_require(benchmark libbenchmark-dev)

# CLI11 is header-only. Debian ships a CMake package; elsewhere a plain include prefix
# (e.g. .deps/include/CLI/CLI.hpp) is enough.
find_package(CLI11 CONFIG QUIET)
if(NOT TARGET CLI11::CLI11)
  find_path(FP8SCOPE_CLI11_INCLUDE CLI/CLI.hpp)
  if(FP8SCOPE_CLI11_INCLUDE)
    add_library(CLI11::CLI11 INTERFACE IMPORTED)
    target_include_directories(CLI11::CLI11 INTERFACE ${FP8SCOPE_CLI11_INCLUDE})
  else()
    list(APPEND FP8SCOPE_MISSING "CLI11=libcli11-dev")
  endif()
endif()

if(FP8SCOPE_MISSING)
  set(lines "")
  foreach(m ${FP8SCOPE_MISSING})
    string(REPLACE "=" ";" parts ${m})
    list(GET parts 0 name)
    list(GET parts 1 deb)
    string(APPEND lines "  ${name} (Debian/Ubuntu package: ${deb})\n")
  endforeach()
  string(REPLACE ";" " " flat "${FP8SCOPE_MISSING}")
  message(STATUS "fp8scope-missing: ${flat}")
  message(FATAL_ERROR "fp8scope: these libraries were not found:\n${lines}"
                      "Install them (scripts/setup.sh does, with apt-get, when it can), or add the prefix that holds "
                      "each one (include/, lib/ or lib/cmake/) to CMAKE_PREFIX_PATH; a folder .deps/ in the repository "
                      "is searched as such a prefix.")
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
