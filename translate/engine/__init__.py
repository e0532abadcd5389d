"""The one adversarial training loop (on Hugging Face Accelerate) and what it saves."""
