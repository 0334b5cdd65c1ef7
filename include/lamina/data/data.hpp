// lamina/data/data.hpp: the whole data layer.
//
//   read_file_raw / inflate_gzip / read_file_inflated   (gzip_reader.hpp)
//   load_mnist_csv / parse_mnist_csv                    (mnist_csv.hpp)
//   load_mnist_idx / load_idx_images / load_idx_labels /
//     find_idx_labels_file                              (mnist_idx.hpp)
//   MnistData, Dataset<T>, to_dataset, subset, stratified_split,
//     load_mnist (CSV or IDX, by content)               (dataset.hpp)
#pragma once

#include "lamina/data/gzip_reader.hpp"
#include "lamina/data/dataset.hpp"
#include "lamina/data/mnist_csv.hpp"
#include "lamina/data/mnist_idx.hpp"
