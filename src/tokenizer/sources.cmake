# src/tokenizer/ - vocabularies (GGUF, tokenizer.json), SPM and byte-level BPE encoding, decoding,
# chat templates. Needs PCRE2 (pre-tokenizer regexes) and cJSON (tokenizer.json).
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
list(APPEND TFAB_CORE_SOURCES tokenizer/vocab.c tokenizer/vocab_gguf.c tokenizer/vocab_hf.c tokenizer/pretok.c
     tokenizer/spm.c tokenizer/bpe.c tokenizer/encode.c tokenizer/decode.c tokenizer/chat.c)
list(APPEND TFAB_CORE_LIBS PkgConfig::PCRE2 PkgConfig::CJSON)
