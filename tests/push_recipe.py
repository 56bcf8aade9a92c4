"""Run a recipe with the Hub upload mocked at the ``huggingface_hub`` boundary: ``push_recipe.py RECORD RECIPE ARGS…``.

``HfApi.create_repo`` answers without the network. Every upload of the run is recorded, in order, in RECORD (a JSON
list, rewritten after each one): ``HfApi.upload_folder`` (the final push, a push from ``save_model``, the pushes of
each checkpoint under ``hub_strategy``) and ``HfApi.upload_file`` each add an entry with the repository, the token they
were given, the commit message, ``path_in_repo`` and every file they would have sent (after their patterns), each with
its bytes as latin-1 text, so that a test reads exactly what each push publishes. Any other way of writing to the Hub
(``create_commit``, ``upload_large_folder``) ends the run with an error, so no upload goes unrecorded.
"""

import json
import os
import runpy
import sys
from concurrent.futures import Future

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def install_mock(record: str) -> None:
    from huggingface_hub import HfApi, RepoUrl
    from huggingface_hub.utils import filter_repo_objects

    uploads = []

    def save(entry: dict, run_as_future: bool):
        uploads.append(entry)
        with open(record, "w") as f:
            json.dump(uploads, f)
        if not run_as_future:
            return None
        done = Future()  # what `run_as_future=True` returns (the Trainer polls the checkpoint pushes' futures)
        done.set_result(None)
        return done

    def read(path: str) -> str:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")

    def create_repo(self, repo_id, *args, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, commit_message=None, token=None,
                      allow_patterns=None, ignore_patterns=None, delete_patterns=None, run_as_future=False,
                      **kwargs):  # fmt: skip
        paths = []
        for root, _, files in os.walk(folder_path):
            paths += [os.path.relpath(os.path.join(root, f), folder_path) for f in files]
        kept = sorted(filter_repo_objects(paths, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        files = {p: read(os.path.join(folder_path, p)) for p in kept}
        entry = {"kind": "upload_folder", "repo_id": repo_id, "token": token, "commit_message": commit_message,
                 "path_in_repo": path_in_repo, "files": files}  # fmt: skip
        return save(entry, run_as_future)

    def upload_file(self, *, path_or_fileobj, path_in_repo, repo_id, token=None, commit_message=None,
                    run_as_future=False, **kwargs):  # fmt: skip
        if isinstance(path_or_fileobj, (str, os.PathLike)):
            content = read(path_or_fileobj)
        else:
            data = path_or_fileobj if isinstance(path_or_fileobj, bytes) else path_or_fileobj.read()
            content = data.decode("latin-1")
        entry = {"kind": "upload_file", "repo_id": repo_id, "token": token, "commit_message": commit_message,
                 "path_in_repo": None, "files": {path_in_repo: content}}  # fmt: skip
        return save(entry, run_as_future)

    def unrecorded(name: str):
        def refuse(self, *args, **kwargs):
            raise RuntimeError(f"tests/push_recipe.py: HfApi.{name} called: an upload this mock does not record")

        return refuse

    import huggingface_hub
    import huggingface_hub.hf_api

    HfApi.create_repo = create_repo
    HfApi.upload_folder = upload_folder
    HfApi.upload_file = upload_file
    HfApi.create_commit = unrecorded("create_commit")
    HfApi.upload_large_folder = unrecorded("upload_large_folder")
    # the module-level functions (`huggingface_hub.upload_folder` …) are methods of an instance made at import
    api = HfApi()
    for name in ("create_repo", "upload_folder", "upload_file", "create_commit", "upload_large_folder"):
        for module in (huggingface_hub, huggingface_hub.hf_api):
            if hasattr(module, name):
                setattr(module, name, getattr(api, name))


if __name__ == "__main__":
    record, recipe, *args = sys.argv[1:]
    install_mock(record)
    sys.argv = [recipe, *args]
    runpy.run_path(recipe, run_name="__main__")
