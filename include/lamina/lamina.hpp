// <lamina/lamina.hpp>: the whole public API.
#pragma once

#include "lamina/core/error.hpp"
#include "lamina/core/rng.hpp"
#include "lamina/core/tensor.hpp"
#include "lamina/core/threads.hpp"
#include "lamina/data/augment.hpp"
#include "lamina/data/data.hpp"
#include "lamina/gradcheck.hpp"
#include "lamina/layers/activations.hpp"
#include "lamina/layers/dense.hpp"
#include "lamina/layers/flatten.hpp"
#include "lamina/layers/initializers.hpp"
#include "lamina/layers/layer.hpp"
#include "lamina/loss.hpp"
#include "lamina/model/sequential.hpp"
#include "lamina/optim/optimizer.hpp"
#include "lamina/optim/schedule.hpp"
