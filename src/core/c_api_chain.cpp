// The C face of chain.hpp: nothing is thrown across it.
#include <cstring>
#include <string>

#include "chain.hpp"
#include "x402/x402.h"

namespace {

bool copy_out(const x402_allocator_t *a, const std::string &s, x402_str_t *out)
{
    char *p = static_cast<char *>(a->alloc(a->ctx, s.empty() ? 1 : s.size()));
    if (p == nullptr) {
        return false;
    }
    std::memcpy(p, s.data(), s.size());
    *out = x402_str_t{p, s.size()};
    return true;
}

std::string_view sv(x402_str_t s) noexcept
{
    return s.len == 0 || s.data == nullptr ? std::string_view()
                                           : std::string_view(s.data, s.len);
}

}  // namespace

extern "C" {

int x402_authorization_state_request(x402_str_t settle_body,
                                     const x402_allocator_t *a,
                                     x402_str_t *network, x402_str_t *request)
{
    try {
        auto call = x402::authorization_state_request(sv(settle_body));
        if (!call || !copy_out(a, call->network, network)
            || !copy_out(a, call->request, request)) {
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

int x402_authorization_state_parse(int status, x402_str_t body,
                                   const x402_allocator_t *a, x402_str_t *why)
{
    try {
        std::string w;
        auto st = x402::authorization_state_parse(status, sv(body), &w);
        if (st == x402::AuthorizationState::used) {
            return X402_AUTH_USED;
        }
        if (st == x402::AuthorizationState::unused) {
            return X402_AUTH_UNUSED;
        }
        if (why && !copy_out(a, w, why)) {
            *why = x402_str_t{"", 0};
        }
        return X402_AUTH_ERROR;
    } catch (...) {
        if (why) {
            *why = x402_str_t{"internal error", 14};
        }
        return X402_AUTH_ERROR;
    }
}

}  // extern "C"
