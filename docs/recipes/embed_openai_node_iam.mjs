import { AwsClient } from "aws4fetch";
import OpenAI from "openai";

// SigV4 for an AWS_IAM Function URL, with the AWS credentials in the environment.
const aws = new AwsClient({
  accessKeyId: process.env.AWS_ACCESS_KEY_ID,
  secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  sessionToken: process.env.AWS_SESSION_TOKEN, // temporary credentials only
  service: "lambda",
  region: process.env.AWS_REGION, // the Function URL's region
  retries: 0, // the openai client retries
});
const client = new OpenAI({
  baseURL: process.env.EMBEDDING_URL.replace(/\/$/, "") + "/v1", // https://<id>.lambda-url.<region>.on.aws
  apiKey: "unused", // replaced by the signature
  fetch: (url, init) => aws.fetch(url, init),
});
const texts = ["hello, world!", "Sentence embeddings for retrieval."];
const result = await client.embeddings.create({
  model: "sentence-transformers/all-MiniLM-L6-v2",
  input: texts,
});
console.log(JSON.stringify({ texts, vectors: result.data.map((item) => item.embedding) }));
