# Python's view of lamina's model files:
#   test_model_io's Python case   Python's json, struct and zlib (and numpy) read
#                                 the file as docs/model-files.md describes it
#   python_pytorch_model          the document's PyTorch code loads a saved model
#                                 and gives lamina's predictions (check_pytorch_model.py)
# Both fail under CI when Python, numpy or torch are missing (scripts/install-deps.sh
# installs Debian's python3-numpy and python3-torch) and are skipped otherwise.
#
# LAMINA_PYTHON: the first python3 that imports numpy and torch, trying Debian's
# /usr/bin/python3 (where python3-numpy and python3-torch install) before the
# python3 found on PATH, which may be another installation without them (pyenv).
if(NOT LAMINA_PYTHON)
  find_program(lamina_path_python NAMES python3)
  set(lamina_python_found "")
  foreach(candidate IN ITEMS /usr/bin/python3 ${lamina_path_python})
    if(EXISTS ${candidate} AND NOT lamina_python_found)
      execute_process(COMMAND ${candidate} -c "import numpy, torch" RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
      if(rc EQUAL 0)
        set(lamina_python_found ${candidate})
      endif()
    endif()
  endforeach()
  if(NOT lamina_python_found)
    set(lamina_python_found ${lamina_path_python})
    message(STATUS "lamina: no python3 with numpy and torch found (Debian: apt install python3-numpy python3-torch); "
      "the Python model-file tests fail under CI and are skipped otherwise")
  endif()
  set(LAMINA_PYTHON "${lamina_python_found}" CACHE FILEPATH
    "Python 3 with numpy and torch, for the model-file tests (test_model_io, python_pytorch_model)")
endif()
message(STATUS "lamina: Python for the model-file tests: ${LAMINA_PYTHON}")

if(TARGET test_model_io)
  set_property(TEST test_model_io APPEND PROPERTY ENVIRONMENT "LAMINA_PYTHON=${LAMINA_PYTHON}")
endif()

# Not in the sanitizer build: the writer runs save_model and predict, which the
# Catch2 tests run there; PyTorch's side is not instrumented.
if(NOT LAMINA_SANITIZE)
  add_executable(write_lamina_models ${CMAKE_CURRENT_LIST_DIR}/write_lamina_models.cpp)
  target_link_libraries(write_lamina_models PRIVATE lamina::lamina lamina_dev_flags)
  if(LAMINA_PYTHON)
    add_test(NAME python_pytorch_model
      COMMAND ${LAMINA_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/check_pytorch_model.py
        $<TARGET_FILE:write_lamina_models> ${PROJECT_SOURCE_DIR}/docs/model-files.md
        ${CMAKE_CURRENT_BINARY_DIR}/python_pytorch_model)
    set_tests_properties(python_pytorch_model PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
  else()
    # No Python at all: a test that says so (and fails under CI).
    add_test(NAME python_pytorch_model
      COMMAND ${CMAKE_COMMAND} -E env sh -c
        "echo 'python_pytorch_model: no python3 found'; if [ -n \"$CI\" ]; then exit 1; else exit 77; fi")
    set_tests_properties(python_pytorch_model PROPERTIES SKIP_RETURN_CODE 77)
  endif()
endif()
