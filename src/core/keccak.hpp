// Keccak-256 as Ethereum uses it (original Keccak padding 0x01), which
// Debian 12's OpenSSL 3.0 lacks. The sponge is exposed with its padding byte
// so the tests can cross-check the permutation against OpenSSL's SHA3-256
// (same permutation and rate, padding 0x06).
#ifndef X402_KECCAK_HPP
#define X402_KECCAK_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace x402 {

using Hash32 = std::array<uint8_t, 32>;

// Keccak-f[1600] on 25 little-endian lanes.
void keccak_f1600(uint64_t st[25]) noexcept;

// Incremental sponge with rate 136 bytes (capacity 512), 32-byte output.
class Keccak256 {
public:
    explicit Keccak256(uint8_t pad = 0x01) noexcept : pad_(pad) {}
    void update(const void *data, size_t len) noexcept;
    void update(std::string_view s) noexcept { update(s.data(), s.size()); }
    Hash32 finish() noexcept;

private:
    static constexpr size_t rate = 136;
    uint64_t st_[25] = {};
    size_t pos_ = 0;  // bytes absorbed into the current block
    uint8_t pad_;
};

// One-shot sponge with an explicit domain padding byte (0x01 Keccak,
// 0x06 SHA3).
Hash32 sponge256(const void *data, size_t len, uint8_t pad) noexcept;

inline Hash32 keccak256(const void *data, size_t len) noexcept
{
    return sponge256(data, len, 0x01);
}

inline Hash32 keccak256(std::string_view data) noexcept
{
    return sponge256(data.data(), data.size(), 0x01);
}

}  // namespace x402

#endif
