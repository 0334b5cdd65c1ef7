# Header hygiene, run by ctest (check_headers.cmake says what each mode checks):
#   headers_include_graph  no include after code, no cycle (printed as its path),
#                          no include of a missing header; the headers of
#                          LAMINA_LIGHT_HEADER_DIRS reach neither nlohmann-json
#                          nor stb
#   headers_standalone     every public header compiles alone (-fsyntax-only),
#                          those of LAMINA_LIGHT_HEADER_DIRS without nlohmann-json
#                          and stb on the include path
# Headers are globbed when the test runs. The directories below are the layers,
# the model and what they stand on: a program that includes only these needs
# Eigen, xsimd, OpenMP and zlib, not the model files' or the report's libraries.
set(LAMINA_LIGHT_HEADER_DIRS core kernels layers loss check optim metrics model data)

set(lamina_headers_flags -std=c++17 ${OpenMP_CXX_FLAGS})
if(LAMINA_NATIVE)
  list(APPEND lamina_headers_flags -march=native)  # the SIMD paths lamina's own programs compile
endif()
set(lamina_light_includes
  "$<TARGET_PROPERTY:Eigen3::Eigen,INTERFACE_INCLUDE_DIRECTORIES>"
  "$<TARGET_PROPERTY:lamina::xsimd,INTERFACE_INCLUDE_DIRECTORIES>"
  "${ZLIB_INCLUDE_DIRS}")
file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/headers_config.cmake CONTENT "\
set(INCLUDE_DIR \"${PROJECT_SOURCE_DIR}/include\")
set(WORK_DIR \"${CMAKE_CURRENT_BINARY_DIR}/headers_standalone\")
set(CXX \"${CMAKE_CXX_COMPILER}\")
set(CXX_FLAGS \"${lamina_headers_flags}\")
set(LIGHT_DIRS \"${LAMINA_LIGHT_HEADER_DIRS}\")
set(LIGHT_INCLUDES \"${lamina_light_includes}\")
set(FULL_INCLUDES \"${lamina_light_includes};$<TARGET_PROPERTY:nlohmann_json::nlohmann_json,INTERFACE_INCLUDE_DIRECTORIES>;${LAMINA_STB_INCLUDE_DIR}\")
set(NLOHMANN_DIRS \"$<TARGET_PROPERTY:nlohmann_json::nlohmann_json,INTERFACE_INCLUDE_DIRECTORIES>\")
set(STB_DIR \"${LAMINA_STB_INCLUDE_DIR}\")
")
foreach(mode IN ITEMS graph compile)
  if(mode STREQUAL "graph")
    set(test_name headers_include_graph)
  else()
    set(test_name headers_standalone)
  endif()
  add_test(NAME ${test_name}
    COMMAND ${CMAKE_COMMAND} -DCONFIG=${CMAKE_CURRENT_BINARY_DIR}/headers_config.cmake -DMODE=${mode}
      -P ${CMAKE_CURRENT_LIST_DIR}/check_headers.cmake)
endforeach()
set_tests_properties(headers_standalone PROPERTIES TIMEOUT 600)
