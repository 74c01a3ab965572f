#include "offer.hpp"

#include <jansson.h>

#include <cstring>

#include "address.hpp"
#include "facilitator.hpp"
#include "amount.hpp"
#include "base64.hpp"
#include "json_writer.hpp"
#include "networks.hpp"

using x402::OfferError;

namespace {

constexpr std::string_view v2_mid = "\"},\"error\":\"";
constexpr std::string_view v2_end = "\"}";

std::string_view sv(x402_str_t s) noexcept
{
    return s.len == 0 ? std::string_view() : std::string_view(s.data, s.len);
}

x402_str_t view(const std::string &s) noexcept
{
    return x402_str_t{s.data(), s.size()};
}

void check(bool ok, const char *message)
{
    if (!ok) {
        throw OfferError{message};
    }
}

bool is_token(std::string_view s) noexcept
{
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
                  || c == '_';
        if (!ok) {
            return false;
        }
    }
    return !s.empty();
}

char *put(char *out, std::string_view s) noexcept
{
    if (!s.empty()) {
        std::memcpy(out, s.data(), s.size());
    }
    return out + s.size();
}

}  // namespace

x402_offer_s::x402_offer_s(const x402_requirement_t *in, size_t n,
                           std::string_view extensions)
{
    using namespace x402;
    if (!extensions.empty()) {
        // Spliced verbatim into every 402: one JSON object, bounded so a
        // client's echo of it still fits a payment header.
        check(extensions.size() <= max_extensions_len
                  && json_depth_within(extensions, X402_MAX_JSON_DEPTH - 2),
              "extensions must be a JSON object of at most 8192 bytes and "
              "14 levels");
        json_error_t e;
        json_t *j = json_loadb(extensions.data(), extensions.size(),
                               JSON_REJECT_DUPLICATES, &e);
        bool object = j != nullptr && json_is_object(j);
        json_decref(j);
        check(object, "extensions must be a JSON object of at most 8192 "
                      "bytes and 14 levels");
    }
    check(in != nullptr && n >= 1, "an offer needs at least one requirement");
    check(n <= max_offer_requirements, "an offer has at most 16 requirements");
    reqs_.reserve(n);
    for (size_t i = 0; i < n; i++) {
        const x402_requirement_t &r = in[i];
        auto q = std::make_unique<Requirement>();
        const char *err = nullptr;

        q->scheme.assign(sv(r.scheme));
        check(q->scheme.size() <= max_scheme_len && is_token(q->scheme),
              "scheme must be 1-32 characters of a-z, 0-9, '-', '_'");
        check(r.network != nullptr, "requirement has no network");
        check(is_uint256_decimal(sv(r.amount)),
              "amount must be a decimal integer of atomic units within "
              "uint256");
        std::string canonical;
        int priced = parse_amount(sv(r.amount), 0, true, canonical, &err);
        check(priced >= 0, err);
        check(priced == 1,
              "amount must be positive (a free location has no offer)");
        q->amount = std::move(canonical);
        auto asset = parse_address(sv(r.asset), &err);
        check(asset.has_value(), "asset is not a valid address");
        q->asset = std::move(*asset);
        auto pay_to = parse_address(sv(r.pay_to), &err);
        check(pay_to.has_value(), "payTo is not a valid address");
        q->pay_to = std::move(*pay_to);
        q->asset_name.assign(sv(r.asset_name));
        check(!q->asset_name.empty()
                  && q->asset_name.size() <= max_asset_name_len,
              "asset EIP-712 name must be 1-128 bytes");
        q->asset_version.assign(sv(r.asset_version));
        check(!q->asset_version.empty()
                  && q->asset_version.size() <= max_asset_version_len,
              "asset EIP-712 version must be 1-32 bytes");
        check(r.asset_decimals <= max_decimals,
              "asset decimals must be at most 77");
        check(r.max_timeout >= 1 && r.max_timeout <= max_timeout_seconds,
              "maxTimeoutSeconds must be within 1..2147483647");
        q->description.assign(sv(r.description));
        check(q->description.size() <= max_description_len,
              "description is longer than 4096 bytes");
        q->mime_type.assign(sv(r.mime_type));
        check(q->mime_type.size() <= max_mime_type_len,
              "mimeType is longer than 256 bytes");

        q->view = x402_requirement_t{
            view(q->scheme),     r.network,       view(q->amount),
            view(q->asset),      view(q->pay_to), view(q->asset_name),
            view(q->asset_version), r.asset_decimals, r.max_timeout,
            view(q->description), view(q->mime_type)};

        std::string extra;
        json_append_key(extra, "extra");
        extra += '{';
        json_append_member(extra, "name", q->asset_name, true);
        json_append_member(extra, "version", q->asset_version);
        extra += "}}";

        std::string &j2 = q->v2_json;
        j2 += '{';
        json_append_member(j2, "scheme", q->scheme, true);
        json_append_member(j2, "network", r.network->caip2);
        json_append_member(j2, "amount", q->amount);
        json_append_member(j2, "asset", q->asset);
        json_append_member(j2, "payTo", q->pay_to);
        j2 += ',';
        json_append_key(j2, "maxTimeoutSeconds");
        json_append_uint(j2, r.max_timeout);
        j2 += ',';
        j2 += extra;

        std::string &h1 = q->v1_head;
        h1 += '{';
        json_append_member(h1, "scheme", q->scheme, true);
        json_append_member(h1, "network", r.network->v1_name);
        json_append_member(h1, "maxAmountRequired", q->amount);
        h1 += ",\"resource\":\"";
        std::string &t1 = q->v1_tail;
        t1 += '"';
        json_append_member(t1, "description", q->description);
        json_append_member(t1, "mimeType", q->mime_type);
        json_append_member(t1, "payTo", q->pay_to);
        t1 += ',';
        json_append_key(t1, "maxTimeoutSeconds");
        json_append_uint(t1, r.max_timeout);
        json_append_member(t1, "asset", q->asset);
        t1 += ',';
        t1 += extra;

        // One entry per way to pay: a second (scheme, network, asset) would
        // be a second price or payTo for the same payment, and a v1 payment
        // (which names no asset) could not tell them apart.
        for (const auto &o : reqs_) {
            check(!(o->scheme == q->scheme && o->view.network == r.network
                    && o->asset == q->asset),
                  "an offer lists each scheme, network and asset once");
        }

        reqs_.push_back(std::move(q));
    }

    // v2: everything up to the URL.
    std::string &p = v2_prefix_;
    p = "{\"x402Version\":2,\"accepts\":[";
    for (size_t i = 0; i < reqs_.size(); i++) {
        if (i != 0) {
            p += ',';
        }
        p += reqs_[i]->v2_json;
    }
    p += ']';
    if (!extensions.empty()) {
        p += ",\"extensions\":";
        p += extensions;
    }
    p += ",\"resource\":{";
    json_append_member(p, "description", reqs_[0]->description, true);
    json_append_member(p, "mimeType", reqs_[0]->mime_type);
    p += ",\"url\":\"";
    size_t whole = p.size() / 3 * 3;
    v2_prefix_b64_ = base64_encode(std::string_view(p).substr(0, whole));
    v2_prefix_rem_ = p.substr(whole);

    // v1: segments around the error and the per-requirement URLs.
    v1_segs_.emplace_back("{\"x402Version\":1,\"error\":\"");
    std::string seg = "\",\"accepts\":[";
    bool first = true;
    for (const auto &q : reqs_) {
        if (!network_is_legacy_v1(q->view.network)) {
            continue;
        }
        if (!first) {
            seg += ',';
        }
        first = false;
        seg += q->v1_head;
        v1_segs_.push_back(std::move(seg));
        seg = q->v1_tail;
    }
    seg += "]}";
    v1_segs_.push_back(std::move(seg));
    for (const auto &s : v1_segs_) {
        v1_const_len_ += s.size();
    }
}

size_t x402_offer_s::v1_json_len(size_t i, std::string_view url) const noexcept
{
    const Requirement &q = *reqs_[i];
    return q.v1_head.size() + x402::json_escaped_len(url) + q.v1_tail.size();
}

char *x402_offer_s::v1_json_to(size_t i, std::string_view url,
                               char *out) const noexcept
{
    const Requirement &q = *reqs_[i];
    out = put(out, q.v1_head);
    out = x402::json_escape_to(url, out);
    return put(out, q.v1_tail);
}

std::string x402_offer_s::v1_json(size_t i, std::string_view url) const
{
    std::string s(v1_json_len(i, url), '\0');
    v1_json_to(i, url, s.data());
    return s;
}

x402_offer_s::Sizes x402_offer_s::render_sizes(
    std::string_view url, std::string_view error_v2,
    std::string_view error_v1) const noexcept
{
    size_t eu = x402::json_escaped_len(url);
    size_t tail = v2_prefix_rem_.size() + eu + v2_mid.size()
                  + x402::json_escaped_len(error_v2) + v2_end.size();
    size_t urls = v1_segs_.size() - 2;  // one URL between consecutive segs
    Sizes s;
    s.header = v2_prefix_b64_.size() + x402::base64_encoded_len(tail);
    s.body = v1_const_len_ + x402::json_escaped_len(error_v1) + urls * eu;
    s.scratch = tail;
    return s;
}

void x402_offer_s::render_to(std::string_view url, std::string_view error_v2,
                             std::string_view error_v1, char *header,
                             char *body, char *scratch) const noexcept
{
    // v1 body; the URL is escaped once and copied for later requirements.
    char *b = put(body, v1_segs_[0]);
    b = x402::json_escape_to(error_v1, b);
    b = put(b, v1_segs_[1]);
    const char *url_esc = nullptr;
    size_t url_esc_len = 0;
    for (size_t k = 2; k < v1_segs_.size(); k++) {
        if (url_esc == nullptr) {
            url_esc = b;
            b = x402::json_escape_to(url, b);
            url_esc_len = size_t(b - url_esc);
        } else {
            b = put(b, std::string_view(url_esc, url_esc_len));
        }
        b = put(b, v1_segs_[k]);
    }

    // v2 header: constant base64 prefix, then base64 of the variable tail.
    char *t = put(scratch, v2_prefix_rem_);
    if (url_esc != nullptr) {
        t = put(t, std::string_view(url_esc, url_esc_len));
    } else {
        t = x402::json_escape_to(url, t);
    }
    t = put(t, v2_mid);
    t = x402::json_escape_to(error_v2, t);
    t = put(t, v2_end);
    char *h = put(header, v2_prefix_b64_);
    x402::base64_encode_to(std::string_view(scratch, size_t(t - scratch)), h);
}

void x402_offer_s::render(std::string_view url, std::string_view error,
                          std::string &header, std::string &body) const
{
    std::string_view e2 = error.empty() ? x402::default_error_v2 : error;
    std::string_view e1 = error.empty() ? x402::default_error_v1 : error;
    Sizes s = render_sizes(url, e2, e1);
    header.assign(s.header, '\0');
    body.assign(s.body, '\0');
    std::string scratch(s.scratch, '\0');
    render_to(url, e2, e1, header.data(), body.data(), scratch.data());
}
