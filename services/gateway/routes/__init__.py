"""The gateway's endpoints, one `APIRouter` module per resource; `app.create_app` mounts them."""
