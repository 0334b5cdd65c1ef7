# Builds and runs tests/consumer against lamina in one of three ways (MODE).
# Invoked by ctest with -DSOURCE_DIR -DWORK_DIR -DMODE.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message("${out}")
endfunction()

set(consumer_args -DLAMINA_MODE=${MODE} -DCMAKE_BUILD_TYPE=Release)
if(MODE STREQUAL "package")
  # Install lamina alone (no tests or examples) into a scratch prefix.
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lamina-build -DCMAKE_BUILD_TYPE=Release
      -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCHMARKS=OFF
      -DLAMINA_ENABLE_CHECKS=ON -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/lamina-build)
  # Installed headers never include test or example code.
  file(GLOB_RECURSE installed RELATIVE ${WORK_DIR}/prefix ${WORK_DIR}/prefix/*)
  foreach(f IN LISTS installed)
    if(f MATCHES "test|example|catch")
      message(FATAL_ERROR "installed file looks like test or example code: ${f}")
    endif()
  endforeach()
  list(APPEND consumer_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DEXPECT_CHECKS=1)
else()
  list(APPEND consumer_args -DLAMINA_SOURCE_DIR=${SOURCE_DIR} -DEXPECT_CHECKS=0)
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/consumer-build ${consumer_args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build -j 2)
run(${WORK_DIR}/consumer-build/consumer)
