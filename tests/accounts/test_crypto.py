from accounts import crypto


def test_generated_key_has_scheme_prefix_and_matching_hash():
    generated = crypto.generate_key()
    assert generated.raw_key.startswith(f"ais_{generated.prefix}.")
    assert len(generated.prefix) == crypto.PREFIX_LENGTH
    assert generated.hashed_key == crypto.hash_key(generated.raw_key)
    assert generated.raw_key not in generated.hashed_key


def test_generated_keys_are_unique():
    assert len({crypto.generate_key().raw_key for _ in range(100)}) == 100


def test_verify_accepts_only_the_exact_key():
    generated = crypto.generate_key()
    assert crypto.verify_key(generated.raw_key, generated.hashed_key)
    assert not crypto.verify_key(generated.raw_key + "x", generated.hashed_key)
    assert not crypto.verify_key(generated.raw_key, None)


def test_parse_prefix_rejects_malformed_and_absurdly_long_keys():
    generated = crypto.generate_key()
    assert crypto.parse_prefix(generated.raw_key) == generated.prefix
    for bad in [
        "",
        "ais_",
        "Bearer x",
        "ais_zzzzzzzz.secretsecretsecretsecret",
        generated.raw_key + "a" * crypto.MAX_KEY_LENGTH,
    ]:
        assert crypto.parse_prefix(bad) is None
