"""Digest authentication against the RFC 2617 / RFC 7616 test vectors."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from gateway.sip.digest import (
    DigestError,
    authorization,
    challenges_of,
    digest_response,
    parse_challenge,
)


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def test_rfc2617_example() -> None:
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


RFC7616: dict[str, Any] = dict(
    username="Mufasa",
    realm="http-auth@example.org",
    password="Circle of Life",
    method="GET",
    uri="/dir/index.html",
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    qop="auth",
    nc="00000001",
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    assert digest_response(algorithm=algorithm, **RFC7616) == expected


def test_md5_sess_and_no_qop() -> None:
    ha1 = _md5(_md5("u:r:p") + ":n:c")
    ha2 = _md5("INVITE:sip:x@y")
    assert digest_response(
        algorithm="MD5-sess",
        username="u",
        realm="r",
        password="p",
        method="INVITE",
        uri="sip:x@y",
        nonce="n",
        qop="auth",
        nc="00000001",
        cnonce="c",
    ) == _md5(f"{ha1}:n:00000001:c:auth:{ha2}")
    assert digest_response(
        algorithm="MD5", username="u", realm="r", password="p", method="INVITE", uri="sip:x@y", nonce="n"
    ) == _md5(f"{_md5('u:r:p')}:n:{ha2}")


def test_parse_challenge_and_build_authorization() -> None:
    ch = parse_challenge(
        'Digest realm="outcall.test", nonce="abc,def", qop="auth,auth-int", opaque="xyz", '
        "algorithm=MD5, stale=TRUE"
    )
    assert ch.nonce == "abc,def" and ch.qop == ("auth", "auth-int") and ch.stale and ch.opaque == "xyz"
    value = authorization(
        ch, method="INVITE", uri="sip:1380@carrier", username="alice", password="secret", cnonce="0a4f113b"
    )
    expected = digest_response(
        algorithm="MD5",
        username="alice",
        realm="outcall.test",
        password="secret",
        method="INVITE",
        uri="sip:1380@carrier",
        nonce="abc,def",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert value == (
        'Digest username="alice", realm="outcall.test", nonce="abc,def", uri="sip:1380@carrier", '
        f'response="{expected}", algorithm=MD5, opaque="xyz", qop=auth, nc=00000001, cnonce="0a4f113b"'
    )
    assert ch.response_header == "Authorization"
    assert parse_challenge('Digest realm="r", nonce="n"', proxy=True).response_header == "Proxy-Authorization"


def test_unsupported_challenges() -> None:
    with pytest.raises(DigestError, match="not Digest"):
        parse_challenge('Basic realm="r"')
    with pytest.raises(DigestError, match="not supported"):
        parse_challenge('Digest realm="r", nonce="n", algorithm=AKAv1-MD5')
    with pytest.raises(DigestError, match="without realm or nonce"):
        parse_challenge('Digest realm="r"')
    assert challenges_of(['Basic realm="r"'], ['Digest realm="r", nonce="n"'])[0].proxy
