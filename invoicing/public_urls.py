from django.urls import path

from invoicing import views

urlpatterns = [
    path("invoices/<str:invoice_id>/hosted/<str:token>", views.hosted_invoice,
         name="hosted-invoice"),
]
