# The CUDA backend (src/backend/cuda): static library jetlm_cuda, built when JETLM_CUDA=ON.
# Compiles on a machine without a GPU (nvcc + the CUDA libraries are all it needs); a missing
# device is reported at run time by jetlm::cuda::require_device().
#
# Architectures: sm_90 (H100/H200) by default; override with -DCMAKE_CUDA_ARCHITECTURES=...
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures of the jetlm CUDA backend" FORCE)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# CMake 3.25 predates nvcc's C++20 support and knows no flag for it: tell it (nvcc >= 12).
if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

file(GLOB JETLM_CUDA_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cu
  ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cpp)
add_library(jetlm_cuda STATIC ${JETLM_CUDA_SOURCES})
target_link_libraries(jetlm_cuda PUBLIC jetlm_core CUDA::cudart CUDA::cublas CUDA::cublasLt)
set_target_properties(jetlm_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)

# The directory-wide warning flags (-Wall -Wextra ...) are host-compiler flags: keep them for C++
# sources and hand them to nvcc through -Xcompiler for .cu files.
get_target_property(_jetlm_cuda_opts jetlm_cuda COMPILE_OPTIONS)
set(_jetlm_cuda_new_opts "")
if(_jetlm_cuda_opts)
  foreach(opt IN LISTS _jetlm_cuda_opts)
    list(APPEND _jetlm_cuda_new_opts "$<$<COMPILE_LANGUAGE:CXX>:${opt}>")
    if(opt MATCHES "^-W")
      list(APPEND _jetlm_cuda_new_opts "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${opt}>")
    endif()
  endforeach()
endif()
set_property(TARGET jetlm_cuda PROPERTY COMPILE_OPTIONS ${_jetlm_cuda_new_opts})
target_compile_options(jetlm_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -Xptxas=-warn-spills>)
target_compile_definitions(jetlm_cuda PUBLIC JETLM_HAVE_CUDA=1)
