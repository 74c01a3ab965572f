// The network table (CAIP-2 ids, coinbase/x402 specs/x402-specification-v2.md
// 11.1; v1 names from typescript/packages/mechanisms/evm/src/v1/index.ts)
// and each network's default stablecoin (typescript/packages/mechanisms/evm/
// src/shared/defaultAssets.ts; v1: typescript/packages/legacy/x402/src/
// types/shared/evm/config.ts).
//
// Names: a network is found by its v1 name ("base-sepolia", TS/Go values of
// 1.8, lower case only) or by its CAIP-2 id ("eip155:84532"). Networks the
// v1 table does not name (Arbitrum, Mezo testnet) keep v1_name == caip2:
// they can be offered to v2 clients, and a v1 payment naming them that way
// still matches.
//
// Unknown chains: "eip155:<id>" for a chain not in the table is accepted
// (1 <= id <= 2^53 - 1, no leading zeros, so that JavaScript clients read the
// id exactly) with no default asset (usdc == NULL): the glue must then
// require x402_asset with name=, version=, decimals=. Such entries are
// interned in a fixed pool of 64 that lives as long as the process, so the
// returned pointer stays valid; when the pool is full the lookup fails
// (NULL), which bounds memory even if the network comes from a variable.
//
// Default assets: the v2 table (3.1) where it has the chain (Monad's name as
// the newer @x402/evm 2.27.0 DEFAULT_ASSETS has it: "USDC"), else the legacy
// USDC table (3.2, version "2", 6 decimals; Ethereum from the Python v1
// table). MegaETH and Mezo testnet have no default here because their v2
// default tokens are Permit2-only and this module speaks EIP-3009 only.
// Bridged USDC versions ("2") come from the legacy table and are unverified
// on chain (3.2): operators of those chains should check version().
#ifndef X402_NETWORKS_HPP
#define X402_NETWORKS_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "x402/x402.h"

namespace x402 {

// By v1 name or CAIP-2 id; nullptr if unknown or malformed.
const x402_network_t *network_find(std::string_view name);

// The built-in table (not the interned unknown chains), for tests.
const x402_network_t *network_table(size_t *n) noexcept;

// Chain id of "eip155:<decimal>", within 1..2^53-1 and without leading
// zeros; nullopt otherwise.
std::optional<uint64_t> parse_caip2_eip155(std::string_view s) noexcept;

// True if the legacy `x402` npm package (v1 clients x402-fetch,
// x402-axios) knows this network's v1 name: its zod enum rejects a 402
// body whose accepts[] names any other network (coinbase/x402
// typescript/packages/legacy/x402/src/types/shared/network.ts).
bool network_is_legacy_v1(const x402_network_t *n) noexcept;

}  // namespace x402

#endif
