"""resformer-deploy's public Python API: one function per job, typed options in, typed results out.

The CLI (resformer_deploy.cli) is a thin shell over these functions: it parses options, calls
one of them and renders the result. A notebook user calls them directly, e.g.::

    from resformer_deploy import api
    model = api.load("ckpt.pth")
    result = api.verify(model, api.VerifyOptions(target="loihi2-emu", samples=4))
    print(result.verdict)

Each job lives in its own module (api/<job>.py); the names below are the public surface.
"""
# re-exports, one line per job module (keep sorted by module)
