"""embed-corpus on bad input and broken surroundings: one clear sentence, never a traceback.

Bad rows stop the run before any model work: a counting proxy in front of the real server
shows that not one embedding request was sent. `--on-error skip` writes them to a rejects file.
"""

from __future__ import annotations

import json

import pytest

from conftest import free_port
from corpus_helpers import AWS_TEST_ENV, assert_clear_error, read_output, run_cli, write_jsonl
from fault_proxy import FaultProxy

GOOD = [{"id": f"ok-{i}", "text": f"a perfectly fine text number {i}"} for i in range(4)]
BAD_LINES = [
    ("malformed-json", '{"id": "x", "text": "unterminated', "line 3: not valid JSON"),
    ("not-an-object", '["a", "list"]', "line 3: not a JSON object"),
    ("missing-text", '{"id": "x", "body": "wrong field"}', "line 3: no 'text' field"),
    ("empty-text", '{"id": "x", "text": ""}', "line 3: empty 'text'"),
    ("text-not-a-string", '{"id": "x", "text": 42}', "line 3: 'text' is a number, not a string"),
    ("id-not-scalar", '{"id": {"a": 1}, "text": "fine"}', "line 3: 'id' must be a string or an integer"),
    (
        "over-the-limit",
        json.dumps({"id": "x", "text": "word " * 20_001}),
        "line 3: the text has 100,005 characters",
    ),
]


@pytest.fixture
def counting(http_url):
    """A pass-through proxy that counts embedding requests."""
    proxy = FaultProxy(http_url, matches=lambda method, path, body: path.endswith("/v1/embeddings"))
    yield proxy
    proxy.stop()


def corpus_with(tmp_path, bad_line: str):
    lines = [json.dumps(GOOD[0]), json.dumps(GOOD[1]), bad_line, json.dumps(GOOD[2]), json.dumps(GOOD[3])]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name, bad_line, message", BAD_LINES, ids=[case[0] for case in BAD_LINES])
def test_given_a_bad_row_then_the_run_stops_before_any_model_work(
    tmp_path, counting, name, bad_line, message
):
    output = tmp_path / "out.parquet"
    result = run_cli(corpus_with(tmp_path, bad_line), "--output", output, "--target", counting.url)
    assert_clear_error(result, 2, message, "nothing was embedded", "--on-error skip")
    assert counting.forwarded == 0
    assert not output.exists() and not (tmp_path / "out.parquet.parts").exists()


def test_given_on_error_skip_then_bad_rows_go_to_the_rejects_file_and_the_rest_is_embedded(
    tmp_path, counting
):
    lines = [json.dumps(GOOD[0]), BAD_LINES[0][1], json.dumps(GOOD[1]), BAD_LINES[3][1], json.dumps(GOOD[2])]
    source = tmp_path / "corpus.jsonl"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out.parquet"
    result = run_cli(source, "--output", output, "--target", counting.url, "--on-error", "skip")
    assert result.returncode == 0, result.stderr
    assert read_output(output)[0] == ["ok-0", "ok-1", "ok-2"]
    rejects = [json.loads(line) for line in (tmp_path / "out.parquet.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["id"]) for r in rejects] == [(2, None), (4, "x")]
    assert rejects[0]["reason"].startswith("not valid JSON") and rejects[1]["reason"] == "empty 'text'"
    assert "2 rows rejected" in result.stderr and "2 rejected rows skipped" in result.stdout


def test_given_a_csv_without_the_text_column_then_it_names_the_columns(tmp_path):
    source = tmp_path / "corpus.csv"
    source.write_text("id,body\n1,hello\n")
    assert_clear_error(
        run_cli(source, "--output", tmp_path / "o.parquet"), 2, "no 'text' column", "id, body", "--text-field"
    )


def test_given_an_existing_output_then_overwrite_is_needed(tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", ["one text"])
    output = tmp_path / "out.parquet"
    output.write_bytes(b"precious")
    assert_clear_error(run_cli(source, "--output", output), 2, "exists", "--overwrite")
    assert output.read_bytes() == b"precious"
    assert run_cli(source, "--output", output, "--overwrite").returncode == 0
    assert read_output(output)[0] == ["doc-0"]


@pytest.mark.parametrize(
    "target, env, fragments",
    [
        (f"http://127.0.0.1:{free_port()}", {}, ("cannot reach", "is the server running")),
        ("ftp://example.com", {}, ("--target", "lambda://FUNCTION_NAME")),
        ("lambda://", AWS_TEST_ENV, ("needs a function name",)),
    ],
)
def test_given_an_unusable_target_then_one_clear_sentence(tmp_path, target, env, fragments):
    source = write_jsonl(tmp_path / "corpus.jsonl", ["one text"])
    result = run_cli(source, "--output", tmp_path / "o.parquet", "--target", target, env=env)
    assert_clear_error(result, result.returncode, *fragments)
    assert result.returncode in (1, 2)


def test_given_a_wrong_api_key_then_it_says_to_pass_the_key(tmp_path, tmp_path_factory):
    from conftest import UvicornServer

    server = UvicornServer(tmp_path_factory.mktemp("keyed") / "server.log", API_KEY="right-key")
    try:
        source = write_jsonl(tmp_path / "corpus.jsonl", ["one text"])
        result = run_cli(
            source, "--output", tmp_path / "o.parquet", "--target", server.url, "--api-key", "wrong"
        )
        assert_clear_error(result, 1, "401", "--api-key")
        ok = run_cli(
            source, "--output", tmp_path / "o.parquet", "--target", server.url, "--api-key", "right-key"
        )
        assert ok.returncode == 0, ok.stderr
    finally:
        server.stop()


def test_given_a_wrong_function_name_then_not_found(tmp_path, moto):
    """moto's Lambda API answers a missing function as AWS does (ResourceNotFoundException)."""
    source = write_jsonl(tmp_path / "corpus.jsonl", ["one text"])
    result = run_cli(
        source,
        "--output",
        tmp_path / "o.parquet",
        "--target",
        "lambda://no-such-function",
        "--endpoint-url",
        moto.url,
        env=AWS_TEST_ENV,
    )
    assert_clear_error(result, 1, "no-such-function", "not found")


def test_given_credentials_aws_refuses_then_it_says_so(tmp_path, http_url):
    proxy = FaultProxy(http_url, flavour="lambda", deny_all=True)
    try:
        source = write_jsonl(tmp_path / "corpus.jsonl", ["one text"])
        result = run_cli(
            source,
            "--output",
            tmp_path / "o.parquet",
            "--target",
            "lambda://function",
            "--endpoint-url",
            proxy.url,
            env=AWS_TEST_ENV,
        )
    finally:
        proxy.stop()
    assert_clear_error(result, 1, "refused the credentials", "UnrecognizedClientException")


def test_given_no_aws_credentials_then_it_says_where_they_come_from(tmp_path, http_url):
    source = write_jsonl(tmp_path / "corpus.jsonl", ["one text"])
    env = {
        key: value
        for key, value in AWS_TEST_ENV.items()
        if not key.startswith("AWS_ACCESS") and not key.startswith("AWS_SECRET")
    }
    result = run_cli(
        source,
        "--output",
        tmp_path / "o.parquet",
        "--target",
        "lambda://function",
        "--endpoint-url",
        http_url,
        env=env,
    )
    assert_clear_error(result, 1, "no AWS credentials")


@pytest.mark.parametrize(
    "uri, fragments",
    [
        ("s3://corpus-bucket/missing.jsonl", ("s3://corpus-bucket/missing.jsonl does not exist",)),
        ("s3://no-such-bucket/corpus.jsonl", ("does not exist",)),
    ],
)
def test_given_a_missing_s3_object_then_one_clear_sentence(tmp_path, moto, uri, fragments):
    moto.client("s3").create_bucket(Bucket="corpus-bucket")
    result = run_cli(
        uri, "--output", tmp_path / "o.parquet", env={**AWS_TEST_ENV, "AWS_ENDPOINT_URL_S3": moto.url}
    )
    assert_clear_error(result, 2, *fragments)


def test_given_a_missing_local_input_then_one_clear_sentence(tmp_path):
    assert_clear_error(
        run_cli(tmp_path / "nope.jsonl", "--output", tmp_path / "o.parquet"), 2, "does not exist"
    )


def test_given_an_unknown_extension_then_it_asks_for_format(tmp_path):
    source = tmp_path / "corpus.data"
    source.write_text('{"text": "hello"}\n')
    assert_clear_error(run_cli(source, "--output", tmp_path / "o.parquet"), 2, "--format")
    assert run_cli(source, "--output", tmp_path / "o.parquet", "--format", "jsonl").returncode == 0


def test_given_a_wrong_text_field_then_it_names_the_option(tmp_path):
    source = tmp_path / "corpus.jsonl"
    source.write_text("".join(json.dumps({"id": i, "body": "some text"}) + "\n" for i in range(5000)))
    result = run_cli(source, "--output", tmp_path / "o.parquet")
    assert_clear_error(result, 2, "line 1: no 'text' field", "(and 4,995 more)", "--text-field")


def test_given_a_function_with_an_api_key_then_direct_invocations_need_none(tmp_path, tmp_path_factory):
    """Direct invocations are authorised by IAM; the probe falls back from /health, which needs the key."""
    from conftest import RieServer

    server = RieServer(tmp_path_factory.mktemp("keyed-rie") / "rie.log", API_KEY="function-key")
    try:
        source = write_jsonl(tmp_path / "corpus.jsonl", ["one text", "another text"])
        output = tmp_path / "o.parquet"
        result = run_cli(
            source,
            "--output",
            output,
            "--target",
            "lambda://function",
            "--endpoint-url",
            server.url,
            env=AWS_TEST_ENV,
        )
        assert result.returncode == 0, result.stderr
        assert "needs its API key" in result.stderr
        assert read_output(output)[0] == ["doc-0", "doc-1"]
    finally:
        server.stop()
