"""Runs the official `openai` Python client against a running `llava serve`
(not part of CI: it needs the openai package). Checks that the client parses
our responses: models.list and models.retrieve, a non-streamed chat
completion with an image (a data: URL), a streamed one whose deltas add up
to the same answer, usage, one with a system message, and that a bad
request raises the client's BadRequestError with our message.

usage: python3 scripts/check_openai_client.py BASE_URL IMAGE [API_KEY]
  e.g. llava serve --model runs/demo/stage2/final --port 8080 &
       python3 scripts/check_openai_client.py http://127.0.0.1:8080/v1 runs/demo/data/images/test00000.png
"""
import base64
import sys

import openai


def main():
    base_url, image = sys.argv[1], sys.argv[2]
    key = sys.argv[3] if len(sys.argv) > 3 else "unused"
    client = openai.OpenAI(base_url=base_url, api_key=key)
    model = client.models.list().data[0].id
    print("model:", model)
    url = "data:image/png;base64," + base64.b64encode(open(image, "rb").read()).decode()
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What color is the shape in the picture? Options: (A) red (B) green (C) blue (D) yellow"},
        {"type": "image_url", "image_url": {"url": url}}]}]
    r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=16)
    answer = r.choices[0].message.content
    print("answer:", repr(answer), "finish:", r.choices[0].finish_reason, "usage:", r.usage)
    assert r.choices[0].message.role == "assistant" and r.usage.total_tokens == \
        r.usage.prompt_tokens + r.usage.completion_tokens
    pieces, usage = [], None
    for chunk in client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=16,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    print("streamed:", repr("".join(pieces)), "in", len(pieces), "pieces; usage:", usage)
    assert "".join(pieces) == answer and usage.completion_tokens == r.usage.completion_tokens
    r2 = client.chat.completions.create(model=model, temperature=0, max_tokens=16,
                                        messages=[{"role": "system", "content": "Answer briefly."}] + messages)
    print("with a system message:", repr(r2.choices[0].message.content), "prompt tokens:", r2.usage.prompt_tokens)
    assert client.models.retrieve(model).id == model
    try:
        client.chat.completions.create(model=model, messages=[{"role": "wizard", "content": "hi"}])
        raise AssertionError("a bad role was accepted")
    except openai.BadRequestError as e:
        print("bad request:", e.status_code, e.body)
    print("openai client: ok")


if __name__ == "__main__":
    main()
