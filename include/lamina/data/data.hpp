// lamina/data/data.hpp: the whole data layer.
//
//   load_mnist (CSV or IDX, by content)               (load.hpp)
//   load_mnist_csv / parse_mnist_csv                  (mnist_csv.hpp)
//   load_mnist_idx / load_idx_images / load_idx_labels /
//     find_idx_labels_file                            (mnist_idx.hpp)
//   Dataset<T>, to_dataset, subset, stratified_split  (dataset.hpp)
//   random_shift_rotate / AugmentOptions              (augment.hpp)
//   MnistData, what the parsers return                (mnist_data.hpp)
//   is_gzip / inflate_gzip / read_file_inflated       (gzip_reader.hpp)
// read_file_raw, which they all read through, is in core/file_io.hpp.
#pragma once

#include "lamina/data/augment.hpp"
#include "lamina/data/dataset.hpp"
#include "lamina/data/gzip_reader.hpp"
#include "lamina/data/load.hpp"
#include "lamina/data/mnist_csv.hpp"
#include "lamina/data/mnist_data.hpp"
#include "lamina/data/mnist_idx.hpp"
