"""Run a recipe with the Hub upload mocked at the ``huggingface_hub`` boundary: ``push_recipe.py RECORD RECIPE ARGS…``.

``HfApi.create_repo`` answers without the network; ``HfApi.upload_folder`` uploads nothing and writes to RECORD (JSON)
the repository, the token it was given, and every file it would have sent (after its ``ignore_patterns``), each with
its bytes as latin-1 text, so that a test can read exactly what a push publishes.
"""

import json
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def install_mock(record: str) -> None:
    from huggingface_hub import HfApi, RepoUrl
    from huggingface_hub.utils import filter_repo_objects

    def create_repo(self, repo_id, *args, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, token=None, ignore_patterns=None, allow_patterns=None, **kwargs):
        paths = []
        for root, _, files in os.walk(folder_path):
            paths += [os.path.relpath(os.path.join(root, f), folder_path) for f in files]
        kept = sorted(filter_repo_objects(paths, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        files = {p: open(os.path.join(folder_path, p), "rb").read().decode("latin-1") for p in kept}
        with open(record, "w") as f:
            json.dump({"repo_id": repo_id, "token": token, "files": files}, f)
        return None

    HfApi.create_repo = create_repo
    HfApi.upload_folder = upload_folder


if __name__ == "__main__":
    record, recipe, *args = sys.argv[1:]
    install_mock(record)
    sys.argv = [recipe, *args]
    runpy.run_path(recipe, run_name="__main__")
