# Builds and runs tests/consumer against lamina in one of three ways (MODE),
# installs the consumer's library with its export set, and builds and runs
# tests/consumer/downstream against that installed library.
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

# Installed headers never include test or example code.
function(check_installed prefix)
  file(GLOB_RECURSE installed RELATIVE ${prefix} ${prefix}/include/lamina/*)
  foreach(f IN LISTS installed)
    if(f MATCHES "test|example|catch")
      message(FATAL_ERROR "installed file looks like test or example code: ${f}")
    endif()
  endforeach()
endfunction()

set(consumer_prefix ${WORK_DIR}/consumer-prefix)
set(consumer_args -DLAMINA_MODE=${MODE} -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=${consumer_prefix})
if(MODE STREQUAL "package")
  # Install lamina alone (no tests or examples) into a scratch prefix, with the
  # checks switch on so the test also proves that switches travel with the
  # installed target.
  set(lamina_prefix ${WORK_DIR}/lamina-prefix)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lamina-build -DCMAKE_BUILD_TYPE=Release
      -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCHMARKS=OFF
      -DLAMINA_ENABLE_CHECKS=ON -DCMAKE_INSTALL_PREFIX=${lamina_prefix})
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/lamina-build)
  check_installed(${lamina_prefix})
  list(APPEND consumer_args -DCMAKE_PREFIX_PATH=${lamina_prefix} -DEXPECT_CHECKS=1)
  set(search_path "${consumer_prefix}:${lamina_prefix}")
else()
  list(APPEND consumer_args -DLAMINA_SOURCE_DIR=${SOURCE_DIR} -DEXPECT_CHECKS=0)
  # Through add_subdirectory lamina installs itself beside the consumer's library.
  set(search_path "${consumer_prefix}")
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/consumer-build ${consumer_args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build -j 2)
run(${WORK_DIR}/consumer-build/consumer)

# The consumer's library, exported and installed, used by another project.
run(${CMAKE_COMMAND} --install ${WORK_DIR}/consumer-build)
if(NOT MODE STREQUAL "package")
  if(NOT EXISTS ${consumer_prefix}/share/cmake/lamina/laminaConfig.cmake)
    message(FATAL_ERROR "${MODE}: installing the consumer did not install lamina's package beside it")
  endif()
  check_installed(${consumer_prefix})
endif()
run(${CMAKE_COMMAND} -E env CMAKE_PREFIX_PATH=${search_path}
    ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer/downstream -B ${WORK_DIR}/downstream-build
    -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/downstream-build -j 2)
run(${WORK_DIR}/downstream-build/downstream)
