// Classify one inline image through POST /api/v2/classify with openapi-fetch, typed by the generated schema.d.ts.
// Env: AISERVER_URL, AISERVER_API_KEY, IMAGE_BASE64. Prints {"status", "labels"} as JSON; exits 1 on an error answer.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

declare const process: { env: Record<string, string | undefined>; exitCode: number };

type Batch = components["schemas"]["ClassifyBatchJsonRequest"];
type ErrorBody = components["schemas"]["ErrorOutput"];

const client = createClient<paths>({ baseUrl: process.env.AISERVER_URL });
const body: Batch = { images: [{ image: process.env.IMAGE_BASE64 ?? "", filename: "picture.jpg" }], top_k: 3 };
const { data, error, response } = await client.POST("/api/v2/classify", {
  body,
  headers: { Authorization: `Bearer ${process.env.AISERVER_API_KEY}` },
});
if (data) {
  console.log(JSON.stringify({ status: response.status, labels: data.results.map((r) => r.predictions?.[0]?.label) }));
} else {
  const failure: ErrorBody = error;
  console.log(JSON.stringify({ status: response.status, code: failure.code }));
  process.exitCode = 1;
}
