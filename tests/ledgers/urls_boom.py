from django.urls import include, path
from rest_framework.views import APIView


class Boom(APIView):
    required_scope = "read"

    def get(self, request):
        raise RuntimeError("secret internals: password=hunter2")

    def post(self, request):
        from ledgers.services import customer_create

        customer_create(actor=request.user, name="Half", email="half@example.com")
        raise RuntimeError("fails after a write")


def plain_boom(request):
    raise RuntimeError("plain view internals")


urlpatterns = [
    path("v1/boom", Boom.as_view()),
    path("plain-boom", plain_boom),
    path("", include("billing_project.urls")),
]
handler404 = "billing_project.errors.handler404"
handler500 = "billing_project.errors.handler500"
