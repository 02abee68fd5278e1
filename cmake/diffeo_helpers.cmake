# Helpers for diffeo's own tests, examples and benchmarks.

# Compiles `target`'s sources as CUDA when the CUDA backend is on, and applies the
# sanitizer flags when DIFFEO_SANITIZE is on.
function(diffeo_configure_target target)
  if(DIFFEO_ENABLE_CUDA)
    get_target_property(_sources ${target} SOURCES)
    set_source_files_properties(${_sources} PROPERTIES LANGUAGE CUDA)
    set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  endif()
  if(DIFFEO_NATIVE_ARCH AND NOT DIFFEO_ENABLE_CUDA)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
  if(DIFFEO_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                             -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang" AND NOT DIFFEO_ENABLE_CUDA)
    target_compile_options(${target} PRIVATE -Wall -Wextra)
  endif()
endfunction()

# diffeo_add_test(<name> <source>...): a doctest executable registered with CTest.
function(diffeo_add_test name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE diffeo::diffeo diffeo_test_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  diffeo_configure_target(${name})
  add_test(NAME ${name} COMMAND ${name})
endfunction()
