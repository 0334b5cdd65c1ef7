# Tests that are not a single Catch2 file.

# Header-only hygiene: two translation units including everything, linked together.
# Not in the sanitizer build (LAMINA_SANITIZE): what it checks is the link, which
# the normal build does, and its two whole-library compiles cost 2.5 CPU minutes there.
if(NOT LAMINA_SANITIZE)
  add_executable(test_link_two_tu ${CMAKE_CURRENT_SOURCE_DIR}/link/tu_a.cpp ${CMAKE_CURRENT_SOURCE_DIR}/link/tu_b.cpp)
  target_link_libraries(test_link_two_tu PRIVATE lamina::lamina lamina_dev_flags)
  add_test(NAME test_link_two_tu COMMAND test_link_two_tu)
endif()

# Every public header alone: includes at the top, no cycle, self-contained
# (tests/headers/headers.cmake). Not in the sanitizer build, which compiles the
# same headers.
if(NOT LAMINA_SANITIZE)
  include(${CMAKE_CURRENT_SOURCE_DIR}/headers/headers.cmake)
endif()

# Python and PyTorch read lamina's model files (tests/python/python.cmake).
include(${CMAKE_CURRENT_SOURCE_DIR}/python/python.cmake)

# A separate project consumes lamina three ways; the package way goes through a
# real `cmake --install` into a scratch prefix, configured with the checks switch
# on so the test also proves that switches travel with the installed target.
# In each way the project installs a library of its own that links lamina, with
# its export set (install(EXPORT)), and a downstream project builds and runs
# against that installed library (tests/consumer/run_consumer.cmake).
# Not in the sanitizer build: these projects are built with the plain toolchain
# (LAMINA_SANITIZE never reaches the installed target), so they would only
# repeat the normal build's tests.
if(NOT LAMINA_SANITIZE)
  set(consumer_work ${CMAKE_CURRENT_BINARY_DIR}/consumer_work)
  add_test(NAME consumer_package
    COMMAND ${CMAKE_COMMAND}
      -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DWORK_DIR=${consumer_work}/package -DMODE=package
      -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run_consumer.cmake)
  add_test(NAME consumer_subdirectory
    COMMAND ${CMAKE_COMMAND}
      -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DWORK_DIR=${consumer_work}/subdirectory -DMODE=subdirectory
      -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run_consumer.cmake)
  add_test(NAME consumer_fetchcontent
    COMMAND ${CMAKE_COMMAND}
      -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DWORK_DIR=${consumer_work}/fetchcontent -DMODE=fetchcontent
      -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run_consumer.cmake)
  set_tests_properties(consumer_package consumer_subdirectory consumer_fetchcontent PROPERTIES TIMEOUT 600)
endif()

# The GCC < 12.3 AVX-512 miscompile stays worked around for everything that
# links lamina, while LAMINA_GCC_SLP_WORKAROUND is on (its default).
if(LAMINA_GCC_SLP_WORKAROUND)
  add_executable(test_gcc_slp_workaround ${CMAKE_CURRENT_SOURCE_DIR}/gcc_slp_bug.cpp)
  target_link_libraries(test_gcc_slp_workaround PRIVATE lamina::lamina lamina_dev_flags)
  add_test(NAME test_gcc_slp_workaround COMMAND test_gcc_slp_workaround)
endif()

# The sanitizer build compiles only the examples that examples_smoke runs.
if(LAMINA_SANITIZE AND TARGET mnist_cnn)
  set_target_properties(mnist_cnn PROPERTIES EXCLUDE_FROM_ALL TRUE)
endif()

# The example programs, run as a user would (needs the real data; without it the
# test fails, which under CI is the rule).
if(TARGET mnist_mlp AND TARGET mnist_predict)
  add_test(NAME examples_smoke
    COMMAND ${CMAKE_COMMAND} -DMLP=$<TARGET_FILE:mnist_mlp> -DPREDICT=$<TARGET_FILE:mnist_predict>
      -DDATA=${LAMINA_TEST_DATA_DIR} -DWORK=${CMAKE_CURRENT_BINARY_DIR}/examples_smoke
      -P ${PROJECT_SOURCE_DIR}/examples/run_examples_smoke.cmake)
  set_tests_properties(examples_smoke PROPERTIES TIMEOUT 600 RUN_SERIAL TRUE)
endif()
