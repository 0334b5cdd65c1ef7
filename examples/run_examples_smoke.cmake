# Smoke test of the example programs as a user runs them: a short MLP training
# writes metrics.json, report.html and model.safetensors; mnist_predict turns the
# Kaggle test.csv into a 28000-row submission with that model, and prints a
# classification report on labelled data. Invoked by ctest with -DMLP, -DPREDICT,
# -DDATA and -DWORK.
file(REMOVE_RECURSE ${WORK})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${MLP} --train ${DATA}/kaggle-digit-recognizer/train.csv.gz --limit 6000 --epochs 2 --out ${WORK}/mlp --quiet)
foreach(f metrics.json report.html model.safetensors)
  if(NOT EXISTS ${WORK}/mlp/${f})
    message(FATAL_ERROR "mnist_mlp did not write ${f}")
  endif()
endforeach()
file(READ ${WORK}/mlp/metrics.json metrics)
foreach(key val_accuracy history train_images_per_second seed threads confusion_matrix classification_report)
  string(FIND "${metrics}" "\"${key}\"" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "metrics.json lacks ${key}:\n${metrics}")
  endif()
endforeach()

run(${PREDICT} --model ${WORK}/mlp/model.safetensors --input ${DATA}/kaggle-digit-recognizer/test.csv.gz
    --out ${WORK}/submission.csv)
file(STRINGS ${WORK}/submission.csv lines)
list(LENGTH lines count)
list(GET lines 0 header)
list(GET lines 1 first)
if(NOT count EQUAL 28001 OR NOT header STREQUAL "ImageId,Label" OR NOT first MATCHES "^1,[0-9]$")
  message(FATAL_ERROR "bad submission: ${count} lines, header '${header}', first row '${first}'")
endif()

run(${PREDICT} --model ${WORK}/mlp/model.safetensors --input ${DATA}/mnist-idx/t10k-images-idx3-ubyte.gz)
if(NOT last_output MATCHES "weighted avg")
  message(FATAL_ERROR "mnist_predict on labelled data printed no classification report:\n${last_output}")
endif()
message("examples smoke test: submission of ${count} lines")
