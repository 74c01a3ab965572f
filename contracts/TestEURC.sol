// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./EIP3009Token.sol";

/*
 * TestEURC: a second EIP-3009 stablecoin for the several-options tests,
 * with the identity of Circle's EURC (FiatTokenV2: EIP-712 name "EURC",
 * version "2", 6 decimals). js/interop/chain.mjs places it at the Base
 * Sepolia EURC address 0x808456652fdb597867f38412077A9182bf77359F
 * (Circle's published testnet deployment; EURC is not in x402's default
 * asset tables, so offers name it explicitly).
 */
contract TestEURC is EIP3009Token {
    function name() public pure override returns (string memory) {
        return "EURC";
    }

    function symbol() public pure override returns (string memory) {
        return "EURC";
    }

    function version() public pure override returns (string memory) {
        return "2";
    }
}
