"""The HTTP shell around inference: ``cnnlab serve RUN`` (FastAPI + uvicorn, gunicorn for ``--workers``).

- ``options``: ``ServeOptions``, every setting of a server with its one default (the CLI's flags derive from it);
- ``api``: the /predict pipeline in LitServe's stages (decode_request, batch, predict, unbatch, encode_response);
- ``app``: the FastAPI app; ``documents``: its OpenAPI documents; ``reading``: a request's images;
- ``batching``: micro-batching and the model thread; ``limits``, ``http``: what a proxy would bound;
- ``monitoring``: ``GET /metrics``; ``workers``: gunicorn's arbiter; ``server``: ``serve()``;
- ``static/index.html``: the page.

Nothing is imported here, so that reading the options (``cnnlab serve --help``) imports no torch.
"""
