# FP8SCOPE_CUDA: AUTO (use CUDA when a CUDA compiler is found), ON (require it), OFF (host only).
# A host-only build still gives every tool, the CPU reference backend and all CPU tests;
# probes then record their GPU points as `skipped`.
set(FP8SCOPE_CUDA AUTO CACHE STRING "Build the CUDA parts: AUTO, ON or OFF")
set_property(CACHE FP8SCOPE_CUDA PROPERTY STRINGS AUTO ON OFF)

set(FP8SCOPE_HAVE_CUDA OFF)
if(FP8SCOPE_CUDA STREQUAL "OFF")
  message(STATUS "fp8scope: CUDA disabled (FP8SCOPE_CUDA=OFF), building the host-only tools")
else()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 has no C++20 dialect flags for nvcc; kernels need only 17
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(FP8SCOPE_HAVE_CUDA ON)
    message(STATUS "fp8scope: CUDA enabled, architectures ${CMAKE_CUDA_ARCHITECTURES}")
  elseif(FP8SCOPE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "fp8scope: FP8SCOPE_CUDA=ON but no CUDA compiler was found. "
                        "Install the CUDA toolkit or put nvcc on PATH (or set CMAKE_CUDA_COMPILER).")
  else()
    message(STATUS "fp8scope: no CUDA compiler found, building the host-only tools")
  endif()
endif()
