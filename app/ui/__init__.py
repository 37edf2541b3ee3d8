"""The Gradio app: annotate, judge, train, dashboard and data tabs behind one login."""
