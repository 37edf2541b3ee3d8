"""The LLM judge: label the judge queue with an OpenAI-compatible model or a local causal LM.

Modules, in the order a batch uses them:

* `config`: `JudgeConfig` (every flag of `prefloop judge`) and the price table;
* `prompts`: the template (rubric + placeholders), its hash, the repair request;
* `client` / `hf_backend`: one chat call (retries, timeout, logprob fallback) / one forward pass;
* `parsing`: verdict forms and P(A) from top logprobs;
* `aggregate`: swap consistency and panel majority, as pure rules;
* `store_io`: which units are left and the call cache; `writer`: the single store writer;
* `batch`: `run_batch`, the concurrent loop tying them together;
* `agreement`: judge vs human accuracy/kappa, position consistency, length bias.
"""
