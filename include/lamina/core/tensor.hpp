// lamina/core/tensor.hpp: Shape, TensorView<T> and Tensor<T>.
//
// A Tensor<T> owns a 64-byte aligned buffer of up to 4 dimensions, row-major,
// images in NHWC. A TensorView<T> is a cheap non-owning (pointer, shape) pair;
// TensorView<const T> is the read-only kind. Element access is bounds-checked in
// debug builds (LAMINA_CHECKS) and free in Release.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

#include "lamina/core/error.hpp"

namespace lamina {

inline constexpr std::size_t kMaxRank = 4;
inline constexpr std::size_t kAlignment = 64;  // one cache line, one AVX-512 register

/// Up to four dimensions. In layers the first dimension of a full tensor is the
/// batch N; a layer's "sample shape" is the shape without it.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::size_t> dims) {
    if (dims.size() > kMaxRank)
      throw ShapeError(detail::concat("a shape has at most ", kMaxRank, " dimensions, got ",
                                      dims.size()));
    for (std::size_t d : dims) dims_[rank_++] = d;
  }

  std::size_t rank() const noexcept { return rank_; }
  std::size_t operator[](std::size_t axis) const {
    LAMINA_DEBUG_CHECK(axis < rank_, "axis ", axis, " out of range for shape ", to_string());
    return dims_[axis];
  }
  std::size_t& operator[](std::size_t axis) {
    LAMINA_DEBUG_CHECK(axis < rank_, "axis ", axis, " out of range for shape ", to_string());
    return dims_[axis];
  }
  /// Number of elements (1 for rank 0).
  std::size_t size() const noexcept {
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  /// The shape with `n` put in front: the full shape of a batch of samples.
  Shape prepend(std::size_t n) const {
    if (rank_ == kMaxRank)
      throw ShapeError("cannot add a batch dimension to the 4-d shape " + to_string());
    Shape out;
    out.rank_ = rank_ + 1;
    out.dims_[0] = n;
    for (std::size_t i = 0; i < rank_; ++i) out.dims_[i + 1] = dims_[i];
    return out;
  }
  /// The shape without its first dimension.
  Shape drop_first() const {
    Shape out;
    if (rank_ == 0) return out;
    out.rank_ = rank_ - 1;
    for (std::size_t i = 1; i < rank_; ++i) out.dims_[i - 1] = dims_[i];
    return out;
  }
  /// "(28, 28, 1)"; with batch_symbol "N": "(N, 28, 28, 1)" for a sample shape.
  std::string to_string(const char* batch_symbol = nullptr) const {
    std::string s = "(";
    bool first = true;
    if (batch_symbol) {
      s += batch_symbol;
      first = false;
    }
    for (std::size_t i = 0; i < rank_; ++i) {
      if (!first) s += ", ";
      s += std::to_string(dims_[i]);
      first = false;
    }
    if (rank_ == 1 && !batch_symbol) s += ",";
    return s + ")";
  }
  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (std::size_t i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

 private:
  std::array<std::size_t, kMaxRank> dims_{};
  std::size_t rank_ = 0;
};

template <class T>
class TensorView {
 public:
  using value_type = std::remove_const_t<T>;

  TensorView() = default;
  TensorView(T* data, const Shape& shape) : data_(data), shape_(shape) {}
  /// A view of mutable data converts to a read-only view.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  TensorView(const TensorView<U>& other) : data_(other.data()), shape_(other.shape()) {}

  T* data() const noexcept { return data_; }
  const Shape& shape() const noexcept { return shape_; }
  std::size_t rank() const noexcept { return shape_.rank(); }
  std::size_t dim(std::size_t axis) const { return shape_[axis]; }
  std::size_t size() const noexcept { return shape_.size(); }
  /// True for a view of nothing: default-constructed, or with a zero dimension.
  bool empty() const noexcept { return data_ == nullptr || size() == 0; }
  T* begin() const noexcept { return data_; }
  T* end() const noexcept { return data_ + size(); }

  /// Flat element access.
  T& operator[](std::size_t i) const {
    LAMINA_DEBUG_CHECK(i < size(), "flat index ", i, " out of range for shape ", shape_.to_string());
    return data_[i];
  }
  /// Multi-index access; the number of indices must equal the rank.
  template <class... I>
  T& operator()(I... idx) const {
    static_assert(sizeof...(I) >= 1 && sizeof...(I) <= kMaxRank, "1 to 4 indices");
    LAMINA_DEBUG_CHECK(sizeof...(I) == shape_.rank(), "indexing a tensor of shape ",
                       shape_.to_string(), " with ", sizeof...(I), " indices");
    const std::size_t list[] = {static_cast<std::size_t>(idx)...};
    std::size_t flat = 0;
    for (std::size_t a = 0; a < sizeof...(I); ++a) {
      LAMINA_DEBUG_CHECK(list[a] < shape_[a], "index ", list[a], " out of range on axis ", a,
                         " of shape ", shape_.to_string());
      flat = flat * shape_[a] + list[a];
    }
    return data_[flat];
  }

  /// Samples [begin, end) along the first axis, as a view.
  TensorView slice(std::size_t begin, std::size_t end) const {
    if (shape_.rank() == 0 || begin > end || end > shape_[0])
      throw ShapeError(detail::concat("slice [", begin, ", ", end, ") out of range for shape ",
                                      shape_.to_string()));
    Shape s = shape_;
    s[0] = end - begin;
    return TensorView(data_ + begin * (size() / std::max<std::size_t>(shape_[0], 1)), s);
  }
  /// The same elements seen with another shape of the same size.
  TensorView reshape(const Shape& shape) const {
    if (shape.size() != size())
      throw ShapeError("cannot reshape " + shape_.to_string() + " to " + shape.to_string());
    return TensorView(data_, shape);
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

namespace detail {
struct AlignedFree {
  void operator()(void* p) const noexcept { ::operator delete(p, std::align_val_t(kAlignment)); }
};
}  // namespace detail

/// Owning, 64-byte aligned, zero-initialised tensor.
template <class T>
class Tensor {
  static_assert(std::is_trivially_copyable_v<T>, "Tensor holds plain numbers");

 public:
  Tensor() = default;
  explicit Tensor(const Shape& shape) { resize(shape); }
  Tensor(const Shape& shape, T fill) {
    resize(shape);
    std::fill(data(), data() + size(), fill);
  }
  Tensor(const Tensor& other) : Tensor(other.shape_) {
    if (size()) std::memcpy(data(), other.data(), size() * sizeof(T));
  }
  Tensor& operator=(const Tensor& other) {
    if (this != &other) {
      resize(other.shape_);
      if (size()) std::memcpy(data(), other.data(), size() * sizeof(T));
    }
    return *this;
  }
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  /// A copy of any view.
  static Tensor from(TensorView<const T> view) {
    Tensor t(view.shape());
    if (t.size()) std::memcpy(t.data(), view.data(), t.size() * sizeof(T));
    return t;
  }

  /// Gives the tensor `shape`. Keeps the buffer when it is big enough (so a
  /// workspace resized to the same or a smaller shape does not allocate); the
  /// contents are unspecified after a resize that changes the size.
  void resize(const Shape& shape) {
    const std::size_t n = shape.size();
    if (n > capacity_) {
      storage_.reset(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlignment))));
      std::memset(static_cast<void*>(storage_.get()), 0, n * sizeof(T));
      capacity_ = n;
    }
    shape_ = shape;
  }
  void fill(T value) { std::fill(data(), data() + size(), value); }
  void zero() { if (size()) std::memset(static_cast<void*>(data()), 0, size() * sizeof(T)); }

  T* data() noexcept { return storage_.get(); }
  const T* data() const noexcept { return storage_.get(); }
  const Shape& shape() const noexcept { return shape_; }
  std::size_t rank() const noexcept { return shape_.rank(); }
  std::size_t dim(std::size_t axis) const { return shape_[axis]; }
  std::size_t size() const noexcept { return shape_.size(); }
  bool empty() const noexcept { return size() == 0; }
  T* begin() noexcept { return data(); }
  T* end() noexcept { return data() + size(); }
  const T* begin() const noexcept { return data(); }
  const T* end() const noexcept { return data() + size(); }

  TensorView<T> view() noexcept { return {data(), shape_}; }
  TensorView<const T> view() const noexcept { return {data(), shape_}; }
  TensorView<const T> cview() const noexcept { return {data(), shape_}; }
  operator TensorView<T>() noexcept { return view(); }
  operator TensorView<const T>() const noexcept { return view(); }

  T& operator[](std::size_t i) { return view()[i]; }
  const T& operator[](std::size_t i) const { return view()[i]; }
  template <class... I>
  T& operator()(I... idx) { return view()(idx...); }
  template <class... I>
  const T& operator()(I... idx) const { return view()(idx...); }

 private:
  std::unique_ptr<T, detail::AlignedFree> storage_;
  std::size_t capacity_ = 0;
  Shape shape_;
};

}  // namespace lamina
