#include <diffeo/io/png.hpp>

#include <doctest/doctest.h>
#include <png.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/backends.hpp"

using namespace diffeo;
namespace fs = std::filesystem;

namespace {

/// A fresh directory under the system's temp directory, removed with its contents.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    for (int i = 0; path.empty() || fs::exists(path); ++i)
      path = fs::temp_directory_path() / ("diffeo_test_png_" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
  std::size_t entries() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), {}));
  }
};

/// A PNG written with libpng directly (so the reader is checked against libpng, not against
/// our own writer): `rows` holds the raw samples, 16-bit ones big-endian.
struct raw_png {
  png_uint_32 width, height;
  int color_type, bit_depth;
  std::vector<unsigned char> samples;
  std::vector<png_color> palette;
};

bool write_raw_png_impl(std::FILE* fp, const raw_png* in, png_bytep* rows) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, in->width, in->height, in->bit_depth, in->color_type,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!in->palette.empty())
    png_set_PLTE(png, info, in->palette.data(), static_cast<int>(in->palette.size()));
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

void write_raw_png(const fs::path& path, raw_png in) {
  const std::size_t row_bytes = in.samples.size() / in.height;
  std::vector<png_bytep> rows(in.height);
  for (png_uint_32 y = 0; y < in.height; ++y) rows[y] = in.samples.data() + y * row_bytes;
  std::FILE* fp = std::fopen(path.c_str(), "wb");
  REQUIRE(fp != nullptr);
  const bool ok = write_raw_png_impl(fp, &in, rows.data());
  std::fclose(fp);
  REQUIRE(ok);
}

/// PNG stores 16-bit samples big-endian.
void append_be16(std::vector<unsigned char>& bytes, std::uint16_t v) {
  bytes.push_back(static_cast<unsigned char>(v >> 8));
  bytes.push_back(static_cast<unsigned char>(v & 0xff));
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

/// doctest's matcher for a run-time string.
doctest::Contains contains(const std::string& s) { return doctest::Contains(s.c_str()); }

/// An image whose samples run through all 256 8-bit levels in a scrambled order.
image<float, 2, backend::serial> levels_image(index_t nx, index_t ny, int channels) {
  image<float, 2, backend::serial> img(make_extents(nx, ny), channels);
  for (index_t i = 0; i < img.size(); ++i) img[i] = float((i * 37 + 11) % 256) / 255.0f;
  return img;
}

}  // namespace

TEST_CASE("8-bit values round-trip exactly for 1, 3 and 4 channels") {
  temp_dir dir;
  for (int c : {1, 3, 4}) {
    CAPTURE(c);
    const auto img = levels_image(23, 13, c);  // odd width: rows are not 4-byte aligned
    const auto path = dir / ("levels" + std::to_string(c) + ".png");
    write_png(path, img);
    const auto back = read_png(path);
    REQUIRE(back.ext() == img.ext());
    REQUIRE(back.channels() == c);
    int mismatches = 0;
    for (index_t i = 0; i < img.size(); ++i) mismatches += back[i] != img[i];
    CHECK(mismatches == 0);
  }
  CHECK(dir.entries() == 3);  // no temporary files left beside the outputs
}

TEST_CASE("pixel (x, y) of the file is element (y, x) of the image, x fastest") {
  temp_dir dir;
  // 3 wide, 2 high, grey: samples written row by row with libpng.
  write_raw_png(dir / "xy.png", {3, 2, PNG_COLOR_TYPE_GRAY, 8, {0, 10, 20, 30, 40, 50}, {}});
  const auto img = read_png(dir / "xy.png");
  REQUIRE(img.ext() == make_extents(3, 2));
  CHECK(img({{2, 0}}) == 20 / 255.0f);
  CHECK(img({{0, 1}}) == 30 / 255.0f);
}

TEST_CASE_TEMPLATE("images on every backend can be written", B, DIFFEO_TEST_BACKENDS) {
  temp_dir dir;
  const auto host = levels_image(9, 7, 3);
  const auto img = to_backend<B>(host);
  write_png(dir / "b.png", img);
  const auto back = read_png(dir / "b.png");
  REQUIRE(back.size() == host.size());
  for (index_t i = 0; i < host.size(); ++i) CHECK(back[i] == host[i]);
}

TEST_CASE("writing clamps to [0, 1], rounds to the nearest level and writes NaN as 0") {
  temp_dir dir;
  image<float, 2, backend::serial> img(make_extents(7, 1));
  const float in[7] = {-0.5f, 0.5f, 2.0f, std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(), 0.2f, 1.4f / 255.0f};
  const int expected[7] = {0, 128, 255, 0, 255, 51, 1};
  for (int i = 0; i < 7; ++i) img[i] = in[i];
  write_png(dir / "clamp.png", img);
  const auto back = read_png(dir / "clamp.png");
  for (int i = 0; i < 7; ++i) {
    CAPTURE(i);
    CHECK(back[i] == expected[i] / 255.0f);
  }
}

TEST_CASE("16-bit input is read at full precision") {
  temp_dir dir;
  const std::uint16_t grey[6] = {0, 1, 1000, 32768, 65534, 65535};
  std::vector<unsigned char> bytes;
  for (auto v : grey) append_be16(bytes, v);
  write_raw_png(dir / "g16.png", {3, 2, PNG_COLOR_TYPE_GRAY, 16, bytes, {}});
  const auto g = read_png(dir / "g16.png");
  REQUIRE(g.channels() == 1);
  REQUIRE(g.ext() == make_extents(3, 2));
  for (int i = 0; i < 6; ++i) {
    CAPTURE(i);
    // 1000 / 65535 is 0.0153; the nearest 8-bit level (4 / 255) is 0.0157.
    CHECK(std::abs(g[i] - grey[i] / 65535.0) < 1e-7);
  }

  // RGBA, 16 bits: two pixels; channel order survives.
  const std::uint16_t rgba[8] = {65535, 0, 1000, 40000, 1, 2, 3, 65535};
  bytes.clear();
  for (auto v : rgba) append_be16(bytes, v);
  write_raw_png(dir / "c16.png", {2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 16, bytes, {}});
  const auto c = read_png(dir / "c16.png");
  REQUIRE(c.channels() == 4);
  for (int i = 0; i < 8; ++i) CHECK(std::abs(c[i] - rgba[i] / 65535.0) < 1e-7);
}

TEST_CASE("grey + alpha is read as RGBA, a palette as RGB") {
  temp_dir dir;
  write_raw_png(dir / "ga.png", {2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, {51, 255, 102, 0}, {}});
  const auto ga = read_png(dir / "ga.png");
  REQUIRE(ga.channels() == 4);
  const int ga_expected[8] = {51, 51, 51, 255, 102, 102, 102, 0};
  for (int i = 0; i < 8; ++i) CHECK(ga[i] == ga_expected[i] / 255.0f);

  write_raw_png(dir / "pal.png",
                {3, 1, PNG_COLOR_TYPE_PALETTE, 8, {1, 0, 1}, {{10, 20, 30}, {200, 100, 50}}});
  const auto pal = read_png(dir / "pal.png");
  REQUIRE(pal.channels() == 3);
  const int pal_expected[9] = {200, 100, 50, 10, 20, 30, 200, 100, 50};
  for (int i = 0; i < 9; ++i) CHECK(pal[i] == pal_expected[i] / 255.0f);
}

TEST_CASE("a missing file is an io_error naming the path") {
  temp_dir dir;
  const auto path = dir / "no_such_file.png";
  CHECK_THROWS_WITH_AS(read_png(path), contains(path.string()), io_error);
  CHECK_THROWS_WITH_AS(read_png(path), doctest::Contains("cannot open"), io_error);
  CHECK_THROWS_WITH_AS(read_png(dir.path), doctest::Contains("directory"), io_error);
}

TEST_CASE("garbage and truncated files are io_errors naming the path") {
  temp_dir dir;
  const auto garbage = dir / "garbage.png";
  write_bytes(garbage, "this is not a PNG file, only text with a .png name");
  CHECK_THROWS_WITH_AS(read_png(garbage), doctest::Contains("not a PNG"), io_error);
  CHECK_THROWS_WITH_AS(read_png(garbage), contains(garbage.string()), io_error);

  const auto empty = dir / "empty.png";
  write_bytes(empty, "");
  CHECK_THROWS_WITH_AS(read_png(empty), doctest::Contains("not a PNG"), io_error);

  // The right signature, then garbage: libpng's own error path (longjmp) must report it.
  const auto bad_header = dir / "bad_header.png";
  write_bytes(bad_header, std::string("\x89PNG\r\n\x1a\n", 8) + std::string(64, '\x42'));
  CHECK_THROWS_WITH_AS(read_png(bad_header), doctest::Contains("corrupt or truncated"), io_error);

  // A valid file cut in the image data, and cut inside the header.
  const auto full = dir / "full.png";
  write_png(full, levels_image(64, 64, 3));
  REQUIRE_NOTHROW(read_png(full));
  const auto size = fs::file_size(full);
  for (std::uintmax_t cut : {size / 2, std::uintmax_t(size - 12), std::uintmax_t(20)}) {
    CAPTURE(cut);
    const auto truncated = dir / "truncated.png";
    fs::copy_file(full, truncated, fs::copy_options::overwrite_existing);
    fs::resize_file(truncated, cut);
    CHECK_THROWS_WITH_AS(read_png(truncated), contains(truncated.string()), io_error);
  }
}

TEST_CASE("a wrong channel count is an io_error, and nothing is written") {
  temp_dir dir;
  for (int c : {2, 5}) {
    CAPTURE(c);
    image<float, 2, backend::serial> img(make_extents(4, 4), c);
    const auto path = dir / "bad.png";
    CHECK_THROWS_WITH_AS(write_png(path, img), contains("1, 3 or 4 channels, got " + std::to_string(c)),
                         io_error);
    CHECK_THROWS_WITH_AS(write_png(path, img), contains(path.string()), io_error);
  }
  CHECK_THROWS_WITH_AS(write_png(dir / "e.png", image<float, 2, backend::serial>{}),
                       doctest::Contains("empty"), io_error);
  CHECK(dir.entries() == 0);
}

TEST_CASE("a failed write leaves no file, and an existing file untouched") {
  temp_dir dir;
  const auto img = levels_image(8, 8, 1);

  // The directory does not exist: the temporary file cannot even be created.
  const auto nowhere = dir / "missing_dir" / "out.png";
  CHECK_THROWS_WITH_AS(write_png(nowhere, img), contains(nowhere.string()), io_error);
  CHECK(!fs::exists(nowhere));

  // The target is a directory: encoding succeeds, the final rename fails; the temporary
  // file must be gone.
  fs::create_directory(dir / "taken.png");
  CHECK_THROWS_AS(write_png(dir / "taken.png", img), io_error);
  CHECK(fs::is_directory(dir / "taken.png"));
  CHECK(dir.entries() == 1);

  // An existing image survives a failed overwrite, and is replaced by a good one.
  const auto path = dir / "keep.png";
  write_png(path, img);
  image<float, 2, backend::serial> two(make_extents(3, 3), 2);
  CHECK_THROWS_AS(write_png(path, two), io_error);
  const auto kept = read_png(path);
  REQUIRE(kept.size() == img.size());
  for (index_t i = 0; i < img.size(); ++i) CHECK(kept[i] == img[i]);
  const auto other = levels_image(5, 2, 4);
  write_png(path, other);
  CHECK(read_png(path).channels() == 4);
  CHECK(dir.entries() == 2);
}
