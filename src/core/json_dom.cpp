#include "json_dom.hpp"

#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

#include "x402/x402.h"

namespace x402 {

using Json = simdjson::dom::element;

namespace {

bool has_nul(std::string_view s)
{
    return std::memchr(s.data(), '\0', s.size()) != nullptr;
}

}  // namespace

Walk json_walk(Json j, int depth)
{
    switch (j.type()) {
    case simdjson::dom::element_type::STRING:
        return has_nul(std::string_view(j)) ? Walk::bad : Walk::ok;
    case simdjson::dom::element_type::ARRAY:
        if (depth > X402_MAX_JSON_DEPTH) {
            return Walk::too_deep;
        }
        for (Json v : simdjson::dom::array(j)) {
            if (Walk w = json_walk(v, depth + 1); w != Walk::ok) {
                return w;
            }
        }
        return Walk::ok;
    case simdjson::dom::element_type::OBJECT: {
        if (depth > X402_MAX_JSON_DEPTH) {
            return Walk::too_deep;
        }
        simdjson::dom::object o(j);
        // Small objects (every one an x402 payload has) compare keys pair
        // by pair; large ones sort, so a crafted 16 KiB object of short
        // keys costs n log n, not n^2.
        size_t n = o.size();
        if (n <= 16) {
            std::string_view keys[16];
            size_t k = 0;
            for (auto field : o) {
                for (size_t i = 0; i < k; i++) {
                    if (keys[i] == field.key) {
                        return Walk::bad;
                    }
                }
                keys[k++] = field.key;
            }
        } else {
            std::vector<std::string_view> keys;
            keys.reserve(n);
            for (auto field : o) {
                keys.push_back(field.key);
            }
            std::sort(keys.begin(), keys.end());
            if (std::adjacent_find(keys.begin(), keys.end()) != keys.end()) {
                return Walk::bad;
            }
        }
        for (auto field : o) {
            if (has_nul(field.key)) {
                return Walk::bad;
            }
            if (Walk w = json_walk(field.value, depth + 1); w != Walk::ok) {
                return w;
            }
        }
        return Walk::ok;
    }
    default:
        return Walk::ok;
    }
}

}  // namespace x402
