// Coinbase Developer Platform (CDP) API authentication: the short-lived JWT
// that Coinbase's hosted x402 facilitator
// (https://api.cdp.coinbase.com/platform/v2/x402) requires as
// `Authorization: Bearer <JWT>` on every /verify, /settle and /supported.
//
// The token is the one the official CDP SDKs build (generateJwt in
// @coinbase/cdp-sdk src/auth/utils/jwt.ts, 1.57.0; auth.GenerateJWT in
// coinbase/cdp-sdk go/auth/jwt.go, which coinbase/x402
// go/legacy/pkg/coinbasefacilitator/cdp.go calls):
//   header  {"alg":"ES256"|"EdDSA","kid":<key id>,"typ":"JWT",
//            "nonce":<16 random bytes, lower-case hex>}
//   payload {"sub":<key id>,"iss":"cdp","aud":["cdp_service"],
//            "nbf":now,"iat":now,"exp":now+120,
//            "uris":["<METHOD> <host><path>"]}
// `aud` is the Go SDK's default (the TypeScript SDK leaves it out unless
// given); the hosted API accepts both, and an explicit audience is what
// every other CDP client sends. The x402 facilitator client
// (@coinbase/cdp-sdk src/x402/facilitator.ts) signs POST for verify/settle
// and GET for supported, host = the base URL's host (with a non-default
// port), path = the base URL's path + "/verify" etc.
//
// Keys are what the CDP portal hands out:
//   ES256: a PEM EC P-256 private key, SEC1 ("BEGIN EC PRIVATE KEY", as the
//          Go SDK parses it with x509.ParseECPrivateKey) or PKCS#8 ("BEGIN
//          PRIVATE KEY", as jose's importPKCS8 in the TS SDK wants);
//   EdDSA: standard base64 of 64 bytes, the Ed25519 seed then its public key
//          (the Go SDK's ed25519.PrivateKey layout); the public half must
//          match the seed, or every token would fail to verify.
// An ES256 signature is JOSE's fixed 64-byte r || s (RFC 7518 3.4), not the
// DER that OpenSSL produces.
#ifndef X402_CDP_JWT_HPP
#define X402_CDP_JWT_HPP

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace x402 {

struct PkeyDeleter {
    void operator()(EVP_PKEY *k) const noexcept { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

enum class CdpAlg { es256, eddsa };

struct CdpKey {
    std::string key_id;
    CdpAlg alg = CdpAlg::es256;
    PkeyPtr pkey;
};

constexpr int64_t cdp_jwt_default_lifetime = 120;  // seconds, both SDKs
constexpr size_t cdp_max_key_id = 256;
constexpr size_t cdp_max_secret = 8192;
constexpr size_t cdp_max_host = 255;
constexpr size_t cdp_max_path = 1024;

// Parses a key; nullopt with *err naming the rule broken.
std::optional<CdpKey> cdp_key_load(std::string_view key_id,
                                   std::string_view secret, const char **err);

// The JWT (without "Bearer "); nullopt with *err on bad arguments or a
// signing failure. lifetime 0 means cdp_jwt_default_lifetime.
std::optional<std::string> cdp_jwt(const CdpKey &key, std::string_view method,
                                   std::string_view host,
                                   std::string_view path, int64_t now,
                                   int64_t lifetime, const char **err);

// RFC 4648 section 5 base64url without padding, as JWS compact form uses.
std::string base64url_encode(std::string_view in);

}  // namespace x402

#endif
