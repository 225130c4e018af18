// openai_client.mjs - the official openai npm client against tfab serve: chat and completions,
// whole and streamed, must give the greedy reference text; an unknown model is a NotFoundError.
// usage: node openai_client.mjs NODE_MODULES_DIR BASE_URL PROMPT WANT N
import { createRequire } from "module";
const [dir, baseURL, prompt, want, n] = process.argv.slice(2);
const require = createRequire(dir + "/");
const OpenAI = require("openai");
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const model = "tfab-tiny-f16";
const max_tokens = Number(n);
function check(what, got) {
  if (got !== want) {
    console.error(`openai_client: ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    process.exit(1);
  }
  console.log(`openai_client: ${what} ok`);
}
const msgs = [{ role: "user", content: prompt }];
let r = await client.chat.completions.create({ model, messages: msgs, max_tokens, temperature: 0 });
check("chat", r.choices[0].message.content);
if (r.usage.completion_tokens !== max_tokens || r.choices[0].finish_reason !== "length") {
  console.error("openai_client: chat usage/finish", JSON.stringify(r));
  process.exit(1);
}
let text = "";
const s = await client.chat.completions.create({ model, messages: msgs, max_tokens, temperature: 0, stream: true });
for await (const chunk of s) text += chunk.choices[0]?.delta?.content ?? "";
check("chat stream", text);
r = await client.completions.create({ model, prompt, max_tokens, temperature: 0 });
check("completion", r.choices[0].text);
text = "";
const cs = await client.completions.create({ model, prompt, max_tokens, temperature: 0, stream: true });
for await (const chunk of cs) text += chunk.choices[0]?.text ?? "";
check("completion stream", text);
const models = await client.models.list();
if (!models.data.some((m) => m.id === model)) {
  console.error("openai_client: models.list lacks", model);
  process.exit(1);
}
try {
  await client.chat.completions.create({ model: "no-such-model", messages: msgs });
  console.error("openai_client: an unknown model was accepted");
  process.exit(1);
} catch (e) {
  if (!(e instanceof OpenAI.NotFoundError) || e.status !== 404 || e.code !== "model_not_found") {
    console.error("openai_client: unknown model gave", e);
    process.exit(1);
  }
  console.log("openai_client: unknown model -> NotFoundError ok");
}
