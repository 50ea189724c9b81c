"""The built-in decoders, each a plugin module registered through an entry point of the
``superposition_harness`` group, exactly as a third-party package registers its own."""
