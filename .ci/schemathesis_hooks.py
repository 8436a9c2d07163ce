"""Schemathesis hooks for .ci/schemathesis.

Each request comes from a client address of its own (X-Forwarded-For, believed because the demo
runs with --trusted-proxy 127.0.0.1). The fuzzer sends many wrong tokens on purpose (the
`ignored_auth` check); from one address they would soon lock that address out with 429 (the
limit on guessing tokens doing its job), and the rest of the run would test the limiter instead
of the API. Spreading the requests keeps every operation's own logic under test.
"""

import itertools

import schemathesis

_requests = itertools.count(1)


@schemathesis.hook
def before_call(context, case, kwargs):
    number = next(_requests)
    # 10.x.y.1: a /24 of its own for each request, up to 65 536 of them.
    case.headers = {
        **(case.headers or {}),
        "X-Forwarded-For": f"10.{number % 256}.{(number // 256) % 256}.1",
    }
