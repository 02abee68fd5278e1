#pragma once
/// PNG files in and out, through libpng (link `diffeo::io`). Images are float, channels
/// interleaved last (docs/conventions.md), values in [0, 1]: grey (1 channel), RGB (3) or
/// RGBA (4). Outside the core's include graph: only this header needs libpng.

#include <png.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "../core/field.hpp"

namespace diffeo {

/// Reads the PNG file `path` as an image in [0, 1] on the serial backend: 1 channel for
/// grey, 3 for RGB, 4 for RGBA (grey with alpha becomes RGBA, a palette RGB or RGBA).
/// 8- and 16-bit samples keep their precision (value / 255 or value / 65535); gamma and
/// colour-space chunks are ignored. Throws `io_error` naming `path` when the file is
/// missing, not a PNG, or corrupt or truncated.
image<float, 2, backend::serial> read_png(const std::filesystem::path& path);

/// Writes `img` (1, 3 or 4 channels, on any backend) to `path` as an 8-bit grey, RGB or
/// RGBA PNG: values are clamped to [0, 1] and rounded to the nearest of 256 levels; NaN
/// is written as 0. The file is written beside `path` under a temporary name and renamed
/// into place, so `path` is either untouched or complete. Throws `io_error` naming `path`
/// for a wrong channel count, an empty image, or a failed write (nothing is left behind).
template <class Backend>
void write_png(const std::filesystem::path& path, const image<float, 2, Backend>& img);

// ------------------------------------------------------------------------------------------

namespace detail {

/// What the libpng callbacks share with the code that called libpng. Plain data only:
/// libpng reports errors by longjmp, which must not skip a destructor.
struct png_context {
  char message[256];
};

inline void png_on_error(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<png_context*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof ctx->message, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
// Warnings (unknown chunks, odd sRGB profiles) do not stop reading and are not ours to print.
inline void png_on_warning(png_structp, png_const_charp) {}

// Built by appending: g++ 12 gives a false -Wrestrict on "literal" + std::string at -O3.
inline std::string quoted(const std::filesystem::path& p) {
  std::string s(1, '\'');
  s += p.string();
  s += '\'';
  return s;
}

/// Closes a FILE* on scope exit.
struct file_closer {
  std::FILE* f = nullptr;
  ~file_closer() {
    if (f) std::fclose(f);
  }
};

/// The decoded samples of a PNG after libpng's expansions: 8 or 16 bits, 1/3/4 channels.
struct png_pixels {
  png_uint_32 width = 0, height = 0;
  int channels = 0, bit_depth = 0;
  std::vector<unsigned char> bytes;  // rows back to back, 16-bit samples big-endian
  std::vector<png_bytep> rows;
};

/// Decodes the PNG on `fp` (signature already read) into `out`; false on a libpng error,
/// whose text is then in `ctx`. Locals here are all trivially destructible, so libpng's
/// longjmp back to the setjmp below skips nothing; `out` lives in the caller's frame.
inline bool png_decode(png_structp png, png_infop info, std::FILE* fp, png_pixels* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, fp);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);

  const int color_type = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  const bool grey = (color_type & PNG_COLOR_MASK_COLOR) == 0;
  const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  const bool alpha = (color_type & PNG_COLOR_MASK_ALPHA) != 0 || trns;
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (grey && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (trns) png_set_tRNS_to_alpha(png);
  if (grey && alpha) png_set_gray_to_rgb(png);  // grey + alpha has no place in 1/3/4
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  out->channels = png_get_channels(png, info);
  out->bit_depth = png_get_bit_depth(png, info);
  const std::size_t row_bytes = png_get_rowbytes(png, info);
  out->bytes.resize(row_bytes * out->height);
  out->rows.resize(out->height);
  for (png_uint_32 y = 0; y < out->height; ++y) out->rows[y] = out->bytes.data() + y * row_bytes;
  png_read_image(png, out->rows.data());
  png_read_end(png, nullptr);  // checks the chunks after the image data, up to IEND
  return true;
}

/// Encodes 8-bit interleaved `rows` on `fp`; false on a libpng error (text in `ctx`).
/// Trivially destructible locals only, as in `png_decode`.
inline bool png_encode(png_structp png, png_infop info, std::FILE* fp, png_uint_32 width,
                       png_uint_32 height, int color_type, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, fp);
  png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

/// A float in [0, 1] as the nearest 8-bit level; NaN and values below 0 give 0.
inline unsigned char to_png_byte(float v) {
  if (!(v > 0.0f)) return 0;
  if (v >= 1.0f) return 255;
  return static_cast<unsigned char>(std::lround(v * 255.0f));
}

/// Removes a temporary file on scope exit unless it was renamed into place.
struct temp_file_guard {
  std::filesystem::path path;
  bool armed = false;
  ~temp_file_guard() {
    if (armed) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }
};

/// Writes host image `v` to `path` through a temporary file beside it.
inline void write_png_host(const std::filesystem::path& path, field_view<const float, 2> v) {
  const std::string where = "write_png(" + quoted(path) + ")";
  if (v.channels != 1 && v.channels != 3 && v.channels != 4)
    throw io_error(where + ": expected an image with 1, 3 or 4 channels, got " +
                   std::to_string(v.channels));
  if (v.points() == 0 || v.data == nullptr)
    throw io_error(where + ": the image is empty");
  if (v.ext[0] > 0x7fffffff || v.ext[1] > 0x7fffffff)
    throw io_error(where + ": image of " + to_string(v.ext) + " pixels exceeds PNG limits");

  // Samples first, so that libpng only ever sees finished rows.
  std::vector<unsigned char> bytes(static_cast<std::size_t>(v.size()));
  for (index_t i = 0; i < v.size(); ++i) bytes[static_cast<std::size_t>(i)] = to_png_byte(v[i]);
  const auto width = static_cast<png_uint_32>(v.ext[0]);
  const auto height = static_cast<png_uint_32>(v.ext[1]);
  const std::size_t row_bytes = std::size_t(width) * static_cast<std::size_t>(v.channels);
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = bytes.data() + y * row_bytes;
  const int color_type = v.channels == 1   ? PNG_COLOR_TYPE_GRAY
                         : v.channels == 3 ? PNG_COLOR_TYPE_RGB
                                           : PNG_COLOR_TYPE_RGB_ALPHA;

  // A unique name in the target's directory, so the final rename stays on one file system.
  // Created exclusively ("x"), with the usual permissions (unlike mkstemp's 0600).
  const std::filesystem::path dir =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  temp_file_guard temp;
  file_closer file;
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100 && !file.f; ++attempt) {
    const auto salt = reinterpret_cast<std::uintptr_t>(&temp) ^ (std::uintptr_t(++counter) << 24);
    std::string name(1, '.');
    name += path.filename().string();
    name += ".tmp-" + std::to_string(salt % 999983) + "-" + std::to_string(attempt);
    temp.path = dir / name;
    errno = 0;
    file.f = std::fopen(temp.path.c_str(), "wbx");
    if (!file.f && errno != EEXIST) break;
  }
  if (!file.f)
    throw io_error(where + ": cannot create a temporary file in " + quoted(dir) + ": " +
                   std::strerror(errno));
  temp.armed = true;

  png_context ctx{};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error,
                                            png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  const bool encoded = info && png_encode(png, info, file.f, width, height, color_type, rows.data());
  png_destroy_write_struct(png ? &png : nullptr, info ? &info : nullptr);
  if (!encoded)
    throw io_error(where + ": libpng failed: " + (info ? ctx.message : "out of memory"));

  // fclose flushes: a full disk shows up here, not earlier.
  std::FILE* f = file.f;
  file.f = nullptr;
  if (std::fflush(f) != 0 || std::ferror(f)) {
    const int e = errno;
    std::fclose(f);
    throw io_error(where + ": writing " + quoted(temp.path) + " failed: " + std::strerror(e));
  }
  if (std::fclose(f) != 0)
    throw io_error(where + ": closing " + quoted(temp.path) + " failed: " + std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(temp.path, path, ec);
  if (ec) throw io_error(where + ": cannot rename the finished file into place: " + ec.message());
  temp.armed = false;
}

}  // namespace detail

inline image<float, 2, backend::serial> read_png(const std::filesystem::path& path) {
  const std::string where = "read_png(" + detail::quoted(path) + ")";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw io_error(where + ": is a directory, not a file");
  detail::file_closer file{std::fopen(path.c_str(), "rb")};
  if (!file.f) throw io_error(where + ": cannot open the file: " + std::strerror(errno));

  unsigned char signature[8] = {};
  const std::size_t got = std::fread(signature, 1, sizeof signature, file.f);
  if (got != sizeof signature || png_sig_cmp(signature, 0, sizeof signature) != 0)
    throw io_error(where + ": not a PNG file (bad signature)");

  detail::png_context ctx{};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, detail::png_on_error,
                                           detail::png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  detail::png_pixels px;
  bool decoded = false;
  try {
    decoded = info && detail::png_decode(png, info, file.f, &px);
  } catch (const std::bad_alloc&) {  // the pixel buffer of a (possibly corrupt) huge header
    png_destroy_read_struct(png ? &png : nullptr, info ? &info : nullptr, nullptr);
    throw io_error(where + ": cannot allocate the pixels of a " + std::to_string(px.width) + "x" +
                   std::to_string(px.height) + " image");
  }
  png_destroy_read_struct(png ? &png : nullptr, info ? &info : nullptr, nullptr);
  if (!decoded)
    throw io_error(where + ": corrupt or truncated PNG: " + (info ? ctx.message : "out of memory"));
  if (px.channels != 1 && px.channels != 3 && px.channels != 4)  // not reachable with libpng 1.6
    throw io_error(where + ": unsupported PNG with " + std::to_string(px.channels) + " channels");

  image<float, 2, backend::serial> img(make_extents(px.width, px.height), px.channels);
  float* out = img.data();
  const index_t n = img.size();
  if (px.bit_depth == 16) {
    for (index_t i = 0; i < n; ++i)
      out[i] = float((px.bytes[2 * i] << 8) | px.bytes[2 * i + 1]) / 65535.0f;
  } else {
    for (index_t i = 0; i < n; ++i) out[i] = float(px.bytes[i]) / 255.0f;
  }
  return img;
}

template <class Backend>
void write_png(const std::filesystem::path& path, const image<float, 2, Backend>& img) {
  if constexpr (is_host_backend<Backend>) {
    detail::write_png_host(path, img.view());
  } else {
    if (img.empty()) throw io_error("write_png(" + detail::quoted(path) + "): the image is empty");
    const auto host = to_host(img);
    detail::write_png_host(path, host.view());
  }
}

}  // namespace diffeo
