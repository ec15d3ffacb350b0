import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.EMBEDDING_URL.replace(/\/$/, "") + "/v1", // server root or Function URL, plus /v1
  apiKey: process.env.EMBEDDING_API_KEY ?? "unused", // the service's API_KEY, if it has one
});
const texts = ["hello, world!", "Sentence embeddings for retrieval."];
const result = await client.embeddings.create({
  model: "sentence-transformers/all-MiniLM-L6-v2",
  input: texts,
});
console.log(JSON.stringify({ texts, vectors: result.data.map((item) => item.embedding) }));
