"""The OpenAI-compatible gateway: every profile served as a model under each mount (`/v1/...` for the
chat app, `/inventory/v1/...` for the inventory app).

- `views`: `GET v1/models`, `GET v1/models/{model}`, `POST v1/chat/completions` (thin async views);
- `serializers`: the request body, and the OpenAI objects (completion, chunk, model, error);
- `services`: a completion is a turn of a conversation of the caller's, submitted through
  `chat.turns.turn_enqueue` like the websocket and the REST API, then followed on the channel layer;
- `selectors`: the models (profiles) and a finished turn with its terminal frame;
- `errors`: the one place where domain errors become OpenAI-shaped HTTP errors.
"""
