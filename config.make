# Rebuild the C++ core archive whenever make runs; CMake rebuilds only what
# changed, and the module relinks only if the archive did.
cat << END                                                  >> $NGX_MAKEFILE

$X402_CORE_LIB:	x402core_always
	cmake --build $X402_CORE_BUILD --target x402core -- -j\$\${X402_JOBS:-2}

x402core_always:

.PHONY:	x402core_always

END
