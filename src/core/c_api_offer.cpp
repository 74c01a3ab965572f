// extern "C" shims for networks, addresses, amounts, offers and facilitator
// messages (x402.h). No exception leaves these functions: every body is
// wrapped in try/catch(...), and output buffers come from the caller's
// allocator.
#include <cstring>
#include <exception>
#include <memory>
#include <new>

#include "address.hpp"
#include "amount.hpp"
#include "base64.hpp"
#include "facilitator.hpp"
#include "networks.hpp"
#include "offer.hpp"
#include "payment.hpp"
#include "x402/x402.h"

namespace {

const char *const oom = "out of memory";
const char *const internal = "internal error";

std::string_view sv(x402_str_t s) noexcept
{
    return s.len == 0 || s.data == nullptr ? std::string_view()
                                           : std::string_view(s.data, s.len);
}

char *alloc(const x402_allocator_t *a, size_t n) noexcept
{
    // Never ask for 0 bytes: some allocators answer NULL.
    return static_cast<char *>(a->alloc(a->ctx, n == 0 ? 1 : n));
}

// Copies s into allocator storage; false on allocation failure.
bool copy_out(const x402_allocator_t *a, std::string_view s, x402_str_t *out)
{
    if (s.empty()) {
        *out = x402_str_t{"", 0};
        return true;
    }
    char *p = alloc(a, s.size());
    if (p == nullptr) {
        return false;
    }
    std::memcpy(p, s.data(), s.size());
    *out = x402_str_t{p, s.size()};
    return true;
}

bool base64_out(const x402_allocator_t *a, std::string_view s,
                x402_str_t *out)
{
    size_t n = x402::base64_encoded_len(s.size());
    char *p = alloc(a, n);
    if (p == nullptr) {
        return false;
    }
    x402::base64_encode_to(s, p);
    *out = x402_str_t{p, n};
    return true;
}

int facilitator_out(const x402::FacilitatorAnswer &r,
                    const x402_allocator_t *a, x402_facilitator_result_t *out)
{
    *out = x402_facilitator_result_t{};
    out->outcome = r.outcome;
    if (!copy_out(a, r.reason, &out->reason)
        || !copy_out(a, r.message, &out->message)
        || !copy_out(a, r.payer, &out->payer)
        || !copy_out(a, r.transaction, &out->transaction)
        || !copy_out(a, r.network, &out->network)) {
        return -1;
    }
    if (r.response_json.empty()) {
        out->response_header = x402_str_t{"", 0};
    } else if (!base64_out(a, r.response_json, &out->response_header)) {
        return -1;
    }
    return r.outcome;
}

}  // namespace

extern "C" {

const x402_network_t *x402_network_find(x402_str_t name)
{
    try {
        return x402::network_find(sv(name));
    } catch (...) {
        return nullptr;
    }
}

int x402_address_parse(x402_str_t in, char out[43], const char **err)
{
    const char *e = nullptr;
    try {
        auto a = x402::parse_address(sv(in), &e);
        if (a) {
            std::memcpy(out, a->data(), 42);
            out[42] = '\0';
            return 0;
        }
    } catch (const std::bad_alloc &) {
        e = oom;
    } catch (...) {
        e = internal;
    }
    if (err != nullptr) {
        *err = e;
    }
    return -1;
}

int x402_amount_parse(x402_str_t in, unsigned decimals, int atomic,
                      char out[X402_MAX_AMOUNT_DIGITS + 1], const char **err)
{
    const char *e = nullptr;
    try {
        std::string s;
        int rc = x402::parse_amount(sv(in), decimals, atomic != 0, s, &e);
        if (rc >= 0) {
            std::memcpy(out, s.data(), s.size());
            out[s.size()] = '\0';
            return rc;
        }
    } catch (const std::bad_alloc &) {
        e = oom;
    } catch (...) {
        e = internal;
    }
    if (err != nullptr) {
        *err = e;
    }
    return -1;
}

x402_offer_t *x402_offer_create(const x402_requirement_t *reqs, size_t n,
                                const char **err)
{
    return x402_offer_create_ext(reqs, n, x402_str_t{nullptr, 0}, err);
}

x402_offer_t *x402_offer_create_ext(const x402_requirement_t *reqs, size_t n,
                                    x402_str_t extensions, const char **err)
{
    const char *e = nullptr;
    try {
        std::string_view ext(extensions.data ? extensions.data : "",
                             extensions.data ? extensions.len : 0);
        return std::make_unique<x402_offer_s>(reqs, n, ext).release();
    } catch (const x402::OfferError &oe) {
        e = oe.message;
    } catch (const std::bad_alloc &) {
        e = oom;
    } catch (...) {
        e = internal;
    }
    if (err != nullptr) {
        *err = e;
    }
    return nullptr;
}

void x402_offer_free(x402_offer_t *offer)
{
    std::unique_ptr<x402_offer_s> owned(offer);
}

size_t x402_offer_count(const x402_offer_t *offer)
{
    return offer == nullptr ? 0 : offer->count();
}

const x402_requirement_t *x402_offer_get(const x402_offer_t *offer, size_t i)
{
    if (offer == nullptr || i >= offer->count()) {
        return nullptr;
    }
    return &offer->requirement(i);
}

int x402_offer_render(const x402_offer_t *offer, x402_str_t resource_url,
                      x402_str_t error, const x402_allocator_t *a,
                      x402_str_t *header, x402_str_t *body)
{
    try {
        if (offer == nullptr) {
            return -1;
        }
        std::string_view url = sv(resource_url);
        std::string_view e2 = error.len ? sv(error) : x402::default_error_v2;
        std::string_view e1 = error.len ? sv(error) : x402::default_error_v1;
        x402_offer_s::Sizes s = offer->render_sizes(url, e2, e1);
        // One block: header, body, then scratch space for the v2 tail.
        char *p = alloc(a, s.header + s.body + s.scratch);
        if (p == nullptr) {
            return -1;
        }
        offer->render_to(url, e2, e1, p, p + s.header,
                         p + s.header + s.body);
        *header = x402_str_t{p, s.header};
        *body = x402_str_t{p + s.header, s.body};
        return 0;
    } catch (...) {
        return -1;
    }
}

int x402_facilitator_request(const x402_payment_t *p,
                             const x402_offer_t *offer, size_t requirement,
                             x402_str_t resource_url,
                             const x402_allocator_t *a, x402_str_t *body)
{
    try {
        if (p == nullptr || offer == nullptr || requirement >= offer->count()
            || (p->version != 1 && p->version != 2) || p->json.empty()) {
            return -1;
        }
        std::string_view url = sv(resource_url);
        size_t n = x402::facilitator_request_len(*p, *offer, requirement, url);
        char *out = alloc(a, n);
        if (out == nullptr) {
            return -1;
        }
        x402::facilitator_request_to(*p, *offer, requirement, url, out);
        *body = x402_str_t{out, n};
        return 0;
    } catch (...) {
        return -1;
    }
}

int x402_facilitator_parse_verify(int status, x402_str_t body,
                                  const x402_allocator_t *a,
                                  x402_facilitator_result_t *out)
{
    try {
        return facilitator_out(x402::facilitator_parse_verify(status, sv(body)),
                               a, out);
    } catch (...) {
        return -1;
    }
}

int x402_facilitator_parse_settle(int status, x402_str_t body,
                                  const x402_allocator_t *a,
                                  x402_facilitator_result_t *out)
{
    try {
        return facilitator_out(x402::facilitator_parse_settle(status, sv(body)),
                               a, out);
    } catch (...) {
        return -1;
    }
}

int x402_settle_failure_header(x402_str_t reason, x402_str_t network,
                               x402_str_t payer, const x402_allocator_t *a,
                               x402_str_t *header)
{
    try {
        std::string j = x402::settle_failure_json(sv(reason), sv(network),
                                                  sv(payer));
        return base64_out(a, j, header) ? 0 : -1;
    } catch (...) {
        return -1;
    }
}

int x402_settle_labels(x402_str_t settle_body, const x402_allocator_t *a,
                       x402_settle_labels_t *out)
{
    std::memset(out, 0, sizeof(*out));
    try {
        x402::SettleLabels l = x402::settle_labels(sv(settle_body));
        if (!copy_out(a, l.network, &out->network)
            || !copy_out(a, l.asset, &out->asset)
            || !copy_out(a, l.pay_to, &out->pay_to)
            || !copy_out(a, l.amount, &out->amount)) {
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

}  // extern "C"
